"""PEFT adapters as light task heads: the checked plan, and the adapter once weights are loaded."""
