"""`hf-transfer train`: TransferTrainer, the frozen-feature cache, the pre-flight checks and the command."""
