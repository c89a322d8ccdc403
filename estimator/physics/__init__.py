"""Physics layer: memory and the one fit rule, vLLM's KV pool (``memory.py``); one inference step's FLOPs, bytes,
roofline and communication (``step.py``), serving mechanics (collectives, attention-DP reads, prefill and TTFT,
``serving.py``) and UNet denoisers stage by stage (``unet.py``). Pure functions of catalog entries; nothing is
fitted."""
