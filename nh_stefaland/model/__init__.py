"""The model core: variable tokens, masking, the transformer encoder, adapters and decoders, and ``StefaLand``.

It builds on NeuralHydrology's building blocks (``BaseModel``, ``get_head``, ``Config``) and patches nothing.
"""
