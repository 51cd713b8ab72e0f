"""The K-EXAONE tokenizer recipe: SuperBPE with stock `tokenizers`, vocabulary policy, efficiency."""
