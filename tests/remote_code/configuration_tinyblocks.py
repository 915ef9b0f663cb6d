"""Config of a made-up architecture that transformers does not ship: the stand-in, in tests, for a
model that brings its own modelling code (openPangu in the authors' release)."""

from transformers import PretrainedConfig


class TinyBlocksConfig(PretrainedConfig):
    model_type = "tiny_blocks"

    def __init__(self, vocab_size=360, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                 max_position_embeddings=512, rope_base=10000.0, initializer_range=0.2, **kwargs):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_attention_heads
        self.head_dim = hidden_size // num_attention_heads
        self.max_position_embeddings = max_position_embeddings
        self.rope_base = rope_base
        self.initializer_range = initializer_range
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(**kwargs)
