#pragma once
// The shape of an encoder-decoder model. The encoder and the decoder share the width,
// the heads and the MLP width (as the models this serves do); each has its own layer
// count. The decoder is a Llama-family decoder with a cross-attention after each
// self-attention; its model_config also gives the target vocabulary and positions.
// A source is either token ids (source_vocab_size > 0, an embedding table) or vectors
// (input_dim > 0, a linear input projection with a bias: image patches, audio frames).

#include <cstddef>
#include <stdexcept>
#include <string>

#include "kvdecode/core/model_config.hpp"

namespace kvdecode {

struct seq2seq_config {
    model_config decoder;               // dim, heads, hidden_dim, n_layers (decoder), vocab, seq_len (target positions)
    std::size_t encoder_layers = 0;
    std::size_t max_source_length = 0;  // source positions 0 .. max_source_length - 1
    std::size_t input_dim = 0;          // > 0: sources are vectors of input_dim values
    std::size_t source_vocab_size = 0;  // > 0: sources are token ids below it

    bool vector_sources() const noexcept { return input_dim > 0; }
    // The encoder's layers as a model_config: the decoder's widths, its own layer
    // count, source positions (the RoPE table and the attention scratch size from it).
    model_config encoder() const {
        model_config e = decoder;
        e.n_layers = encoder_layers;
        e.seq_len = max_source_length;
        e.vocab_size = source_vocab_size ? source_vocab_size : 1;
        e.shared_classifier = true;  // an encoder has no classifier
        return e;
    }
};

// Checks a config (the decoder's as model_config does) and fills in head_dim. Throws
// std::invalid_argument naming the field.
inline seq2seq_config validated(seq2seq_config c) {
    auto fail = [](const std::string& what) { throw std::invalid_argument("kvdecode: seq2seq_config: " + what); };
    if (c.decoder.qkv_bias) fail("q/k/v biases are not supported in encoder-decoder models");
    if (c.decoder.shared_classifier) fail("the classifier must be separate from the target embedding (shared_classifier)");
    c.decoder = validated(c.decoder);
    if (c.encoder_layers == 0) fail("encoder_layers must be positive, got 0");
    if (c.max_source_length == 0) fail("max_source_length must be positive, got 0");
    if ((c.input_dim > 0) == (c.source_vocab_size > 0))
        fail("exactly one of input_dim (vector sources) and source_vocab_size (token sources) must be set, got " +
             std::to_string(c.input_dim) + " and " + std::to_string(c.source_vocab_size));
    validated(c.encoder());  // the same bounds for the encoder's sizes
    constexpr std::size_t limit = std::size_t{1} << 24;
    if (c.input_dim > limit) fail("input_dim " + std::to_string(c.input_dim) + " is implausibly large");
    return c;
}

}  // namespace kvdecode
