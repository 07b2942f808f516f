// Encoder-decoder GGUF files: written and read back exactly; every malformed part a
// clear error naming it.

#include <cstring>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/io/seq2seq_gguf.hpp"
#include "kvdecode/model/random_weights.hpp"

using namespace kvdecode;

namespace {

seq2seq_config tiny(bool vectors) {
    seq2seq_config c;
    c.decoder = {.dim = 16, .hidden_dim = 24, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .vocab_size = 12,
                 .seq_len = 32, .shared_classifier = false};
    c.encoder_layers = 3;
    c.max_source_length = 20;
    (vectors ? c.input_dim : c.source_vocab_size) = vectors ? 9 : 30;
    return c;
}

bool same(const float* a, const float* b, std::size_t n) { return std::memcmp(a, b, n * sizeof(float)) == 0; }

}  // namespace

TEST_CASE("seq2seq GGUF: every weight reads back as written", "[io][gguf][seq2seq]") {
    for (bool vectors : {true, false}) {
        const auto w = random_seq2seq_weights<float>(tiny(vectors), 3);
        gguf_writer out = seq2seq_gguf_writer(w);
        out.set("tokenizer.ggml.tokens", std::vector<std::string>{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "<s>", "</s>"});
        out.set("tokenizer.ggml.bos_token_id", gguf_value(std::uint32_t{10}));
        out.set("tokenizer.ggml.eos_token_id", gguf_value(std::uint32_t{11}));
        const std::vector<std::byte> bytes = out.to_bytes();
        const seq2seq_gguf back = read_seq2seq_gguf(gguf_file::from_memory(bytes));
        const seq2seq_config& c = back.weights.config();
        const model_config& d = c.decoder;
        CHECK(c.encoder_layers == 3);
        CHECK(c.max_source_length == 20);
        CHECK(c.input_dim == (vectors ? 9u : 0u));
        CHECK(back.tokens.size() == 12);
        CHECK(back.ids.bos == 10);
        CHECK(back.ids.eos == 11);
        CHECK(!back.patches);
        const auto &we = w.encoder(), &be = back.weights.encoder(), &wd = w.decoder(), &bd = back.weights.decoder();
        for (std::size_t l = 0; l < 3; ++l) {
            CHECK(same(we.wqkv(l), be.wqkv(l), d.qkv_dim() * d.dim));
            CHECK(same(we.w13(l), be.w13(l), 2 * d.hidden_dim * d.dim));
            CHECK(same(we.w2(l), be.w2(l), d.hidden_dim * d.dim));
        }
        for (std::size_t l = 0; l < 2; ++l) {
            CHECK(same(wd.wqkv(l), bd.wqkv(l), d.qkv_dim() * d.dim));
            CHECK(same(w.cross(l).wk.data(), back.weights.cross(l).wk.data(), d.kv_dim() * d.dim));
            CHECK(same(w.cross(l).wo.data(), back.weights.cross(l).wo.data(), d.q_dim() * d.dim));
        }
        CHECK(same(wd.classifier(), bd.classifier(), d.vocab_size * d.dim));
        CHECK(same(we.rms_final(), be.rms_final(), d.dim));
        if (vectors) CHECK(same(w.input_weight().data(), back.weights.input_weight().data(), 9 * d.dim));
        else CHECK(same(we.token_embedding(), be.token_embedding(), 30 * d.dim));
    }
}

TEST_CASE("seq2seq GGUF: malformed files are errors that name the key or tensor", "[io][gguf][seq2seq]") {
    const auto w = random_seq2seq_weights<float>(tiny(true), 1);
    auto fails_with = [](gguf_writer& out, const std::string& text) {
        const std::vector<std::byte> bytes = out.to_bytes();
        CHECK_THROWS_WITH(read_seq2seq_gguf(gguf_file::from_memory(bytes, "m.gguf")), Catch::Contains(text));
    };
    {
        gguf_writer out = seq2seq_gguf_writer(w);
        out.set("general.architecture", "llama");
        fails_with(out, "an encoder-decoder file has 'encdec'");
    }
    {
        gguf_writer out = seq2seq_gguf_writer(w);
        out.remove("encdec.encoder.block_count");
        fails_with(out, "'encdec.encoder.block_count'");
    }
    {
        gguf_writer out = seq2seq_gguf_writer(w);
        out.set("encdec.encoder.vocab_size", gguf_value(std::uint32_t{40}));  // both kinds of source
        fails_with(out, "exactly one of input_dim");
    }
    {
        gguf_writer out = seq2seq_gguf_writer(w);
        out.set("encdec.attention.head_count_kv", gguf_value(std::uint32_t{1}));  // k, v tensors now the wrong shape
        fails_with(out, "tensor 'enc.blk.0.attn_k.weight': expected shape [16, 4], found [16, 8]");
    }
    {
        gguf_writer out = seq2seq_gguf_writer(w);
        const std::vector<float> extra(16, 1.0f);
        out.add_tensor("dec.blk.9.cross_norm.weight", {16}, gguf_type::f32, std::as_bytes(std::span(extra)));
        fails_with(out, "'dec.blk.9.cross_norm.weight': is not a tensor of an encdec model");
    }
    {
        gguf_writer out = seq2seq_gguf_writer(w);
        out.set("encdec.patch_size", gguf_value(std::uint32_t{5}));
        out.set("encdec.image_height", gguf_value(std::uint32_t{28}));
        out.set("encdec.digit_width", gguf_value(std::uint32_t{28}));
        fails_with(out, "patches of it must tile");
    }
}
