"""The Hugging Face engine: one wing for everything that runs a transformers model in this process.

``backend`` (HFBackend: loading, chat prompts, generation), ``continuous`` (continuous batching),
``slot_cache`` (reserved and per-row-slot KV caches), ``kv_quant`` (``--kv-cache`` quantized KV),
``cpu_attention`` (grouped-query attention on a CPU), ``loglik`` (batched choice log-likelihoods for
MMLU), ``quantized_forward`` (activation quantization of a loaded compressed-tensors model).  The
sampler stays in ``backends/sampling.py`` because the llamacpp backend draws with it too.
"""
