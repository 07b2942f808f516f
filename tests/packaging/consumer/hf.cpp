// A user's program against the package's hf component (kvdecode::hf): a config.json and
// a byte-level tokenizer.json read from memory, so the component's parsers (nlohmann-json,
// PCRE2, utf8proc) are found, compiled and linked through the package alone.
#include <kvdecode/io/hf_config.hpp>
#include <kvdecode/io/hf_tokenizer.hpp>

#include <cstdio>

int main() {
    const kvdecode::hf_config config = kvdecode::parse_hf_config(R"({"architectures": ["Qwen2ForCausalLM"],
        "hidden_size": 8, "intermediate_size": 12, "num_hidden_layers": 1, "num_attention_heads": 2,
        "vocab_size": 300, "max_position_embeddings": 16, "rope_parameters": {"rope_theta": 1000000.0}})");
    std::string vocab;
    for (int b = 0; b < 256; ++b) {
        // GPT-2's byte-to-character map: printable bytes stand for themselves, the rest for U+0100 on.
        const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
        static int shifted = 0;
        const char32_t c = printable ? char32_t(b) : char32_t(256 + shifted++);
        std::string utf8;
        if (c < 0x80) utf8 = std::string(1, char(c));
        else utf8 = {char(0xC0 | (c >> 6)), char(0x80 | (c & 0x3F))};
        if (utf8 == "\"" || utf8 == "\\") utf8 = "\\" + utf8;
        vocab += (b ? ", \"" : "\"") + utf8 + "\": " + std::to_string(b);
    }
    const std::string json = R"({"model": {"type": "BPE", "vocab": {)" + vocab + R"(}, "merges": []},
        "normalizer": {"type": "NFC"}, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
        "decoder": {"type": "ByteLevel"}, "added_tokens": []})";
    const kvdecode::hf_tokenizer tok = kvdecode::read_hf_tokenizer_json(json, "consumer");
    const auto ids = tok.encode("héllo wörld");
    const bool round_trip = tok.decode(ids) == "héllo wörld";
    std::printf("rope_theta %g, %zu ids, round trip %s\n", config.model.rope_theta, ids.size(), round_trip ? "ok" : "FAILED");
    return config.model.rope_theta == 1e6 && round_trip ? 0 : 1;
}
