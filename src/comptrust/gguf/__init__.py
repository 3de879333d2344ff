"""GGUF in one home: its header (header), its tokenizer (tokenizer), llama.cpp's converter and quantizer
(tools), a GGUF as a Hugging Face folder (to_hf) and as a compression record (record)."""
