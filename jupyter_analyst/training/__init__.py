"""Training: trajectories -> SFT data -> LoRA/QLoRA adapter -> served and evaluated.

``trajectory`` records runs as JSONL lines ``{"messages", "tools", "meta"}`` (filters:
judged success, duplicates, length); ``collect`` runs a teacher over the evaluation suite
(``jupyter analyst collect``); ``importer`` converts public notebook-agent data
(``jupyter analyst import-trajectories``); ``chat_template`` adds and verifies the
``{% generation %}`` markers assistant-only loss needs; ``memory`` estimates peak GPU
memory; ``train`` runs TRL's SFTTrainer with peft (``jupyter analyst train``); ``merge``
folds an adapter into its base (``jupyter analyst merge``).

Nothing is imported here, so the CLI stays fast; torch/transformers/peft/trl load inside
the functions that need them.
"""
