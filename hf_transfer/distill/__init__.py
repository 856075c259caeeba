"""`hf-transfer distill`: KD losses, students, teachers and their logit cache, DistillationTrainer, the command."""
