"""The Jupyter server extension: runs the analyst in the user's live notebook.

``app.JupyterAnalyst`` is the extension (registered by ``jupyter_analyst``'s
``_jupyter_server_extension_points``); import this package only inside a Jupyter server,
as it pulls in tornado, jupyter_server and pydantic, which the CLI never needs.
"""
