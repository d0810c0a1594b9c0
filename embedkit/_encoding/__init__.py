"""How encode() feeds the model: batching by token length, fast truncating tokenization, and streaming
embeddings into a .npy file."""
