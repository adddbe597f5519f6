"""Jupyter server configuration of the browser tests (started by playwright's webServer).

Galata's helper opens everything up (no token, no XSRF check) and picks a temporary root;
the tests then put a token back, so the sidebar's REST calls and its event websocket go
through the server's real authentication, and drive the server extension with the
rule-based baseline analyst (no model download, deterministic).
"""

import os
import shutil
from pathlib import Path

from jupyterlab.galata import configure_jupyter_server

c = get_config()  # noqa: F821

configure_jupyter_server(c)
shutil.rmtree(c.LabApp.workspaces_dir, ignore_errors=True)  # the helper's empty temp dir; see below

HERE = Path(__file__).resolve().parent
c.ServerApp.port = int(os.environ.get("JUPYTER_ANALYST_UI_PORT", "18888"))
c.IdentityProvider.token = os.environ.get("JUPYTER_ANALYST_UI_TOKEN", "analyst-ui-test-token")
c.ServerApp.disable_check_xsrf = False
c.FileContentsManager.delete_to_trash = False
c.ServerApp.allow_root = True  # CI and these machines run as root
c.LabApp.extension_manager = "readonly"  # no PyPI look-ups from the test server
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"

# The analyst extension: the rule-based baseline policy (no model, deterministic).
c.JupyterAnalyst.profile = "baseline"
c.JupyterAnalyst.max_steps = 40
c.JupyterAnalyst.cell_timeout = 60.0
# On a loaded machine the kernel may take over the default 10 s to answer the request's
# facts check; the run is then accepted and fails by itself (readable, but no API error
# banner). The error test is about the banner, so give the check time.
c.JupyterAnalyst.check_timeout = 60.0

root = Path(c.ServerApp.root_dir)
root.mkdir(parents=True, exist_ok=True)
# The collaboration store and file ids live with the temporary root, not in the repo.
c.SQLiteYStore.db_path = str(root / ".jupyter_ystore.db")
c.LabApp.workspaces_dir = str(root / ".workspaces")
c.BaseFileIdManager.db_path = str(root / ".jupyter_fileid.db")

# The example data in the server root, for anyone exploring the test server by hand.
shutil.copy(HERE.parent / "examples" / "penguins.csv", root / "penguins.csv")

# Enabled here too, so the tests don't depend on how the package's config got installed.
c.ServerApp.jpserver_extensions = {"jupyter_analyst": True}
