#pragma once
// Reads a Hugging Face tokenizer.json (and the tokenizer_config.json beside it) into
// an hf_tokenizer (tokenizer/hf_tokenizer.hpp). Needs nlohmann-json, -lpcre2-8 and
// -lutf8proc.
//
// What is read, and nothing else is accepted silently:
//   model          BPE only: vocab (piece -> id, ids 0..n-1 each once, added tokens
//                  may continue them), merges ("a b" strings or ["a", "b"] pairs, both
//                  parts and their concatenation pieces), unk_token, byte_fallback,
//                  fuse_unk, ignore_merges; dropout null or 0; no
//                  continuing_subword_prefix / end_of_word_suffix
//   added_tokens   id, content, special, normalized, lstrip, rstrip, single_word
//   normalizer     null, NFC, Prepend, Replace (String pattern), Sequence
//   pre_tokenizer  null, Split (Regex or String pattern, any behavior, invert),
//                  ByteLevel, Metaspace, Sequence
//   post_processor null, ByteLevel, TemplateProcessing ("single" only), Sequence
//   decoder        null, ByteLevel, Replace (String pattern), ByteFallback, Fuse,
//                  Strip, Metaspace, Sequence
// "truncation" and "padding" are not read: they shape batches, and transformers sets
// its own on every call. Any other model, stage type, Split behavior or pattern kind
// is a model_format_error naming it.
// tokenizer_config.json: bos_token, eos_token, pad_token, unk_token (a string, null,
// or an object with "content"), add_bos_token, add_eos_token (kept, not applied: the
// post-processor in tokenizer.json says what encode() adds),
// clean_up_tokenization_spaces (kept, not applied: transformers' clean-up after
// tokenizers' decode), chat_template (a string, or a list of {name, template}: the
// one named "default", else the first). Other keys are not read.
//
// The files are untrusted: every field is type-checked, ids are checked to be in
// range, and any failure is a model_format_error naming the file and the field
// (a JSON path such as "model.merges[12]"), what was expected and what was found.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "kvdecode/core/error.hpp"
#include "kvdecode/tokenizer/hf_tokenizer.hpp"
#include "kvdecode/tokenizer/unicode_regex.hpp"

namespace kvdecode {

namespace detail {

class hf_json_reader {
public:
    using json = nlohmann::json;

    explicit hf_json_reader(std::string file) : file_(std::move(file)) {}

    json parse(std::string_view text) const {
        try {
            return json::parse(text.begin(), text.end());
        } catch (const json::exception& e) {
            throw model_format_error(file_, "(document)", "JSON", std::string("invalid JSON: ") + e.what());
        }
    }

    [[noreturn]] void fail(const std::string& field, const std::string& expected, const std::string& found) const {
        throw model_format_error(file_, field, expected, found);
    }

    [[noreturn]] void unsupported(const std::string& field, const std::string& what) const {
        fail(field, "a supported value", what + " (not supported)");
    }

    // What a value is, for messages: its type, and a scalar's value (shortened).
    static std::string found(const json& j) {
        if (j.is_object() || j.is_array()) return std::string(j.type_name()) + " of " + std::to_string(j.size());
        std::string v = j.dump(-1, ' ', false, json::error_handler_t::replace);
        if (v.size() > 60) v = v.substr(0, 57) + "...";
        return std::string(j.type_name()) + " " + v;
    }

    const json& object(const json& j, const std::string& field) const {
        if (!j.is_object()) fail(field, "an object", found(j));
        return j;
    }
    const json& array(const json& j, const std::string& field) const {
        if (!j.is_array()) fail(field, "an array", found(j));
        return j;
    }
    // A member of an object (which must be one), or a model_format_error.
    const json& member(const json& obj, const std::string& field, const char* key) const {
        object(obj, field);
        const auto it = obj.find(key);
        if (it == obj.end()) fail(join(field, key), "a value", "nothing (the key is missing)");
        return *it;
    }
    // A member that may be missing or null.
    const json* optional_member(const json& obj, const std::string& field, const char* key) const {
        object(obj, field);
        const auto it = obj.find(key);
        return it == obj.end() || it->is_null() ? nullptr : &*it;
    }
    std::string string(const json& j, const std::string& field) const {
        if (!j.is_string()) fail(field, "a string", found(j));
        return j.get<std::string>();
    }
    bool boolean(const json& j, const std::string& field) const {
        if (!j.is_boolean()) fail(field, "true or false", found(j));
        return j.get<bool>();
    }
    bool flag(const json& obj, const std::string& field, const char* key, bool otherwise) const {
        const json* v = optional_member(obj, field, key);
        return v ? boolean(*v, join(field, key)) : otherwise;
    }
    std::int64_t integer(const json& j, const std::string& field, std::int64_t lo, std::int64_t hi) const {
        if (!j.is_number_integer()) fail(field, "an integer", found(j));
        const bool is_unsigned = j.is_number_unsigned();
        const auto u = is_unsigned ? j.get<std::uint64_t>() : 0;
        const auto v = is_unsigned ? static_cast<std::int64_t>(std::min<std::uint64_t>(u, INT64_MAX)) : j.get<std::int64_t>();
        if (v < lo || v > hi) fail(field, "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]", found(j));
        return v;
    }
    std::string type_of(const json& stage, const std::string& field) const {
        return string(member(stage, field, "type"), join(field, "type"));
    }

    static std::string join(const std::string& field, const char* key) { return field.empty() ? key : field + "." + key; }
    static std::string at(const std::string& field, std::size_t i) { return field + "[" + std::to_string(i) + "]"; }

    const std::string& file() const noexcept { return file_; }

private:
    std::string file_;
};

// Sequence stages nest; a file cannot make the reader recurse deeper than this.
inline constexpr int hf_max_nesting = 8;

inline std::pair<std::string, bool> hf_pattern(const hf_json_reader& r, const nlohmann::json& stage, const std::string& field) {
    const std::string f = hf_json_reader::join(field, "pattern");
    const nlohmann::json& p = r.object(r.member(stage, field, "pattern"), f);
    if (p.size() != 1) r.fail(f, "{\"String\": ...} or {\"Regex\": ...}", r.found(p));
    if (const auto it = p.find("String"); it != p.end()) return {r.string(*it, f + ".String"), false};
    if (const auto it = p.find("Regex"); it != p.end()) return {r.string(*it, f + ".Regex"), true};
    r.fail(f, "{\"String\": ...} or {\"Regex\": ...}", "{\"" + p.begin().key() + "\": ...}");
}

inline void hf_normalizer(const hf_json_reader& r, const nlohmann::json& j, const std::string& field,
                          std::vector<normalizer_step>& out, int depth) {
    if (j.is_null()) return;
    if (depth > hf_max_nesting) r.fail(field, "at most " + std::to_string(hf_max_nesting) + " nested Sequences", "more");
    const std::string type = r.type_of(j, field);
    if (type == "Sequence") {
        const std::string f = hf_json_reader::join(field, "normalizers");
        const auto& list = r.array(r.member(j, field, "normalizers"), f);
        for (std::size_t i = 0; i < list.size(); ++i) hf_normalizer(r, list[i], hf_json_reader::at(f, i), out, depth + 1);
    } else if (type == "NFC") {
        out.push_back({normalizer_step::kind::nfc, {}, {}});
    } else if (type == "Prepend") {
        out.push_back({normalizer_step::kind::prepend, {}, r.string(r.member(j, field, "prepend"), field + ".prepend")});
    } else if (type == "Replace") {
        auto [pattern, regex] = hf_pattern(r, j, field);
        if (regex) r.unsupported(field + ".pattern", "a Regex pattern in a Replace normalizer");
        if (pattern.empty()) r.fail(field + ".pattern.String", "a non-empty string", "\"\"");
        out.push_back({normalizer_step::kind::replace, std::move(pattern), r.string(r.member(j, field, "content"), field + ".content")});
    } else {
        r.unsupported(field + ".type", "normalizer type \"" + type + "\"");
    }
}

inline prepend_scheme hf_prepend_scheme(const hf_json_reader& r, const nlohmann::json& j, const std::string& field) {
    if (const auto* v = r.optional_member(j, field, "prepend_scheme")) {
        const std::string s = r.string(*v, field + ".prepend_scheme");
        if (s == "always") return prepend_scheme::always;
        if (s == "first") return prepend_scheme::first;
        if (s == "never") return prepend_scheme::never;
        r.fail(field + ".prepend_scheme", "\"always\", \"first\" or \"never\"", r.found(*v));
    }
    // Files from before prepend_scheme: add_prefix_space (default true).
    return r.flag(j, field, "add_prefix_space", true) ? prepend_scheme::always : prepend_scheme::never;
}

inline std::string hf_replacement(const hf_json_reader& r, const nlohmann::json& j, const std::string& field) {
    std::string s = r.string(r.member(j, field, "replacement"), field + ".replacement");
    if (s.empty() || utf8::length_of_valid(s) != s.size()) r.fail(field + ".replacement", "one character", "\"" + s + "\"");
    return s;
}

inline void hf_pre_tokenizer(const hf_json_reader& r, const nlohmann::json& j, const std::string& field,
                             std::vector<pre_tokenizer_step>& out, int depth) {
    if (j.is_null()) return;
    if (depth > hf_max_nesting) r.fail(field, "at most " + std::to_string(hf_max_nesting) + " nested Sequences", "more");
    const std::string type = r.type_of(j, field);
    pre_tokenizer_step s;
    if (type == "Sequence") {
        const std::string f = field + ".pretokenizers";
        const auto& list = r.array(r.member(j, field, "pretokenizers"), f);
        for (std::size_t i = 0; i < list.size(); ++i) hf_pre_tokenizer(r, list[i], hf_json_reader::at(f, i), out, depth + 1);
        return;
    } else if (type == "Split") {
        s.type = pre_tokenizer_step::kind::split;
        std::tie(s.pattern, s.regex) = hf_pattern(r, j, field);
        const std::string pf = field + (s.regex ? ".pattern.Regex" : ".pattern.String");
        if (s.regex) {
            try {
                unicode_regex check(s.pattern);
            } catch (const regex_error& e) {
                r.fail(pf, "a regex", e.what());
            }
        } else if (s.pattern.empty()) {
            r.fail(pf, "a non-empty string", "\"\"");
        }
        const std::string b = r.string(r.member(j, field, "behavior"), field + ".behavior");
        if (b == "Isolated") s.behavior = split_behavior::isolated;
        else if (b == "Removed") s.behavior = split_behavior::removed;
        else if (b == "MergedWithPrevious") s.behavior = split_behavior::merged_with_previous;
        else if (b == "MergedWithNext") s.behavior = split_behavior::merged_with_next;
        else if (b == "Contiguous") s.behavior = split_behavior::contiguous;
        else r.unsupported(field + ".behavior", "Split behavior \"" + b + "\"");
        s.invert = r.flag(j, field, "invert", false);
    } else if (type == "ByteLevel") {
        s.type = pre_tokenizer_step::kind::byte_level;
        s.add_prefix_space = r.flag(j, field, "add_prefix_space", true);
        s.use_regex = r.flag(j, field, "use_regex", true);
        r.flag(j, field, "trim_offsets", true);  // offsets only: type-checked, not used
    } else if (type == "Metaspace") {
        s.type = pre_tokenizer_step::kind::metaspace;
        s.replacement = hf_replacement(r, j, field);
        s.prepend = hf_prepend_scheme(r, j, field);
        s.split = r.flag(j, field, "split", true);
    } else {
        r.unsupported(field + ".type", "pre-tokenizer type \"" + type + "\"");
    }
    out.push_back(std::move(s));
}

inline void hf_decoder(const hf_json_reader& r, const nlohmann::json& j, const std::string& field,
                       std::vector<decoder_step>& out, int depth) {
    if (depth > hf_max_nesting) r.fail(field, "at most " + std::to_string(hf_max_nesting) + " nested Sequences", "more");
    const std::string type = r.type_of(j, field);
    decoder_step s;
    if (type == "Sequence") {
        const std::string f = field + ".decoders";
        const auto& list = r.array(r.member(j, field, "decoders"), f);
        for (std::size_t i = 0; i < list.size(); ++i) hf_decoder(r, list[i], hf_json_reader::at(f, i), out, depth + 1);
        return;
    } else if (type == "ByteLevel") {
        s.type = decoder_step::kind::byte_level;
    } else if (type == "Replace") {
        s.type = decoder_step::kind::replace;
        bool regex = false;
        std::tie(s.pattern, regex) = hf_pattern(r, j, field);
        if (regex) r.unsupported(field + ".pattern", "a Regex pattern in a Replace decoder");
        if (s.pattern.empty()) r.fail(field + ".pattern.String", "a non-empty string", "\"\"");
        s.text = r.string(r.member(j, field, "content"), field + ".content");
    } else if (type == "ByteFallback") {
        s.type = decoder_step::kind::byte_fallback;
    } else if (type == "Fuse") {
        s.type = decoder_step::kind::fuse;
    } else if (type == "Strip") {
        s.type = decoder_step::kind::strip;
        s.content = r.string(r.member(j, field, "content"), field + ".content");
        if (s.content.empty() || utf8::length_of_valid(s.content) != s.content.size())
            r.fail(field + ".content", "one character", "\"" + s.content + "\"");
        s.start = static_cast<std::size_t>(r.integer(r.member(j, field, "start"), field + ".start", 0, 1 << 20));
        s.stop = static_cast<std::size_t>(r.integer(r.member(j, field, "stop"), field + ".stop", 0, 1 << 20));
    } else if (type == "Metaspace") {
        s.type = decoder_step::kind::metaspace;
        s.replacement = hf_replacement(r, j, field);
        s.prepend = hf_prepend_scheme(r, j, field) != prepend_scheme::never;
    } else {
        r.unsupported(field + ".type", "decoder type \"" + type + "\"");
    }
    out.push_back(std::move(s));
}

inline void hf_post_processor(const hf_json_reader& r, const nlohmann::json& j, const std::string& field,
                              post_processor& out, int depth) {
    if (j.is_null()) return;
    if (depth > hf_max_nesting) r.fail(field, "at most " + std::to_string(hf_max_nesting) + " nested Sequences", "more");
    const std::string type = r.type_of(j, field);
    if (type == "Sequence") {
        const std::string f = field + ".processors";
        const auto& list = r.array(r.member(j, field, "processors"), f);
        for (std::size_t i = 0; i < list.size(); ++i) hf_post_processor(r, list[i], hf_json_reader::at(f, i), out, depth + 1);
    } else if (type == "ByteLevel") {
        // Offsets only.
    } else if (type == "TemplateProcessing") {
        const std::string sf = field + ".special_tokens";
        const auto& specials = r.object(r.member(j, field, "special_tokens"), sf);
        const std::string f = field + ".single";
        const auto& single = r.array(r.member(j, field, "single"), f);
        bool seen_sequence = false;
        post_processor added;
        for (std::size_t i = 0; i < single.size(); ++i) {
            const std::string fi = hf_json_reader::at(f, i);
            const auto& item = r.object(single[i], fi);
            if (item.size() != 1) r.fail(fi, "{\"SpecialToken\": ...} or {\"Sequence\": ...}", r.found(item));
            if (const auto it = item.find("Sequence"); it != item.end()) {
                const std::string id = r.string(r.member(*it, fi + ".Sequence", "id"), fi + ".Sequence.id");
                if (id != "A") r.unsupported(fi + ".Sequence.id", "sequence \"" + id + "\" in a single template");
                if (seen_sequence) r.fail(fi, "one $A in the single template", "a second");
                seen_sequence = true;
            } else if (const auto st = item.find("SpecialToken"); st != item.end()) {
                const std::string name = r.string(r.member(*st, fi + ".SpecialToken", "id"), fi + ".SpecialToken.id");
                const auto sp = specials.find(name);
                if (sp == specials.end()) r.fail(fi + ".SpecialToken.id", "a name in special_tokens", "\"" + name + "\"");
                const std::string idf = sf + "." + name + ".ids";
                const auto& ids = r.array(r.member(*sp, sf + "." + name, "ids"), idf);
                for (std::size_t k = 0; k < ids.size(); ++k) {
                    const auto id = static_cast<token_id>(r.integer(ids[k], hf_json_reader::at(idf, k), 0, INT32_MAX - 1));
                    (seen_sequence ? added.suffix : added.prefix).push_back(id);
                }
            } else {
                r.fail(fi, "{\"SpecialToken\": ...} or {\"Sequence\": ...}", "{\"" + item.begin().key() + "\": ...}");
            }
        }
        if (!seen_sequence) r.fail(f, "a template with $A", "none");
        out.prefix.insert(out.prefix.end(), added.prefix.begin(), added.prefix.end());
        out.suffix.insert(out.suffix.end(), added.suffix.begin(), added.suffix.end());
    } else {
        r.unsupported(field + ".type", "post-processor type \"" + type + "\"");
    }
}

inline void hf_model(const hf_json_reader& r, const nlohmann::json& m, bpe_model_data& out) {
    const std::string field = "model";
    r.object(m, field);
    if (const auto* t = r.optional_member(m, field, "type")) {
        const std::string type = r.string(*t, "model.type");
        if (type != "BPE") r.unsupported("model.type", "model type \"" + type + "\"");
    }
    if (const auto* d = r.optional_member(m, field, "dropout")) {
        if (!d->is_number()) r.fail("model.dropout", "null or a number", r.found(*d));
        if (d->get<double>() != 0.0) r.unsupported("model.dropout", "BPE dropout " + r.found(*d));
    }
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
        if (const auto* v = r.optional_member(m, field, key))
            if (!r.string(*v, hf_json_reader::join(field, key)).empty())
                r.unsupported(hf_json_reader::join(field, key), r.found(*v));

    // vocab: piece -> id, the ids 0..n-1 each once.
    const auto& vocab = r.object(r.member(m, field, "vocab"), "model.vocab");
    if (vocab.empty()) r.fail("model.vocab", "at least one piece", "none");
    out.pieces.assign(vocab.size(), std::string());
    std::vector<char> seen(vocab.size(), 0);
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
        const std::string f = "model.vocab[\"" + it.key() + "\"]";
        const auto id = static_cast<std::size_t>(
            r.integer(it.value(), f, 0, static_cast<std::int64_t>(vocab.size()) - 1));
        if (seen[id]) r.fail(f, "ids used once", "id " + std::to_string(id) + " twice (also \"" + out.pieces[id] + "\")");
        seen[id] = 1;
        out.pieces[id] = it.key();
    }
    // Every id in [0, size) is used once, so none is missing.

    std::unordered_map<std::string_view, std::size_t> ids;
    for (std::size_t i = 0; i < out.pieces.size(); ++i) ids.emplace(out.pieces[i], i);
    const auto& merges = r.array(r.member(m, field, "merges"), "model.merges");
    out.merges.reserve(merges.size());
    for (std::size_t i = 0; i < merges.size(); ++i) {
        const std::string f = hf_json_reader::at("model.merges", i);
        std::pair<std::string, std::string> merge;
        if (merges[i].is_string()) {
            const std::string s = merges[i].get<std::string>();
            const std::size_t space = s.find(' ');
            if (space == std::string::npos) r.fail(f, "\"a b\" or [\"a\", \"b\"]", r.found(merges[i]));
            merge = {s.substr(0, space), s.substr(space + 1)};
        } else if (merges[i].is_array() && merges[i].size() == 2) {
            merge = {r.string(merges[i][0], f + "[0]"), r.string(merges[i][1], f + "[1]")};
        } else {
            r.fail(f, "\"a b\" or [\"a\", \"b\"]", r.found(merges[i]));
        }
        for (const std::string& part : {merge.first, merge.second, merge.first + merge.second})
            if (!ids.count(part)) r.fail(f, "a merge of pieces into a piece", "\"" + part + "\", which is not in model.vocab");
        out.merges.push_back(std::move(merge));
    }
    if (const auto* u = r.optional_member(m, field, "unk_token")) out.unk_token = r.string(*u, "model.unk_token");
    out.byte_fallback = r.flag(m, field, "byte_fallback", false);
    out.fuse_unk = r.flag(m, field, "fuse_unk", false);
    out.ignore_merges = r.flag(m, field, "ignore_merges", false);
}

inline void hf_added_tokens(const hf_json_reader& r, const nlohmann::json& j, std::vector<added_token>& out) {
    const auto& list = r.array(j, "added_tokens");
    for (std::size_t i = 0; i < list.size(); ++i) {
        const std::string f = hf_json_reader::at("added_tokens", i);
        added_token t;
        t.id = static_cast<token_id>(r.integer(r.member(list[i], f, "id"), f + ".id", 0, INT32_MAX - 1));
        t.content = r.string(r.member(list[i], f, "content"), f + ".content");
        t.special = r.flag(list[i], f, "special", false);
        t.normalized = r.flag(list[i], f, "normalized", !t.special);
        t.lstrip = r.flag(list[i], f, "lstrip", false);
        t.rstrip = r.flag(list[i], f, "rstrip", false);
        t.single_word = r.flag(list[i], f, "single_word", false);
        out.push_back(std::move(t));
    }
}

// A token in tokenizer_config.json: a string, null, or an object with "content".
inline std::optional<std::string> hf_config_token(const hf_json_reader& r, const nlohmann::json& config, const char* key) {
    const nlohmann::json* v = r.optional_member(config, "", key);
    if (!v) return std::nullopt;
    if (v->is_object()) return r.string(r.member(*v, key, "content"), std::string(key) + ".content");
    return r.string(*v, key);
}

inline void hf_tokenizer_config_of(const hf_json_reader& r, const nlohmann::json& c, hf_tokenizer_config& out) {
    r.object(c, "(document)");
    out.bos_token = hf_config_token(r, c, "bos_token");
    out.eos_token = hf_config_token(r, c, "eos_token");
    out.pad_token = hf_config_token(r, c, "pad_token");
    out.unk_token = hf_config_token(r, c, "unk_token");
    if (const auto* v = r.optional_member(c, "", "add_bos_token")) out.add_bos_token = r.boolean(*v, "add_bos_token");
    if (const auto* v = r.optional_member(c, "", "add_eos_token")) out.add_eos_token = r.boolean(*v, "add_eos_token");
    if (const auto* v = r.optional_member(c, "", "clean_up_tokenization_spaces"))
        out.clean_up_tokenization_spaces = r.boolean(*v, "clean_up_tokenization_spaces");
    if (const auto* t = r.optional_member(c, "", "chat_template")) {
        if (t->is_string()) {
            out.chat_template = t->get<std::string>();
        } else {
            const auto& list = r.array(*t, "chat_template");
            for (std::size_t i = 0; i < list.size(); ++i) {
                const std::string f = hf_json_reader::at("chat_template", i);
                const std::string name = r.string(r.member(list[i], f, "name"), f + ".name");
                std::string text = r.string(r.member(list[i], f, "template"), f + ".template");
                if (!out.chat_template || name == "default") out.chat_template = std::move(text);
                if (name == "default") break;
            }
        }
    }
}

inline std::string hf_read_file(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    if (!in) throw model_format_error(p.string(), "(file)", "a readable file", "none could be opened");
    std::stringstream s;
    s << in.rdbuf();
    if (in.bad()) throw model_format_error(p.string(), "(file)", "a readable file", "a read error");
    return s.str();
}

// Both files' texts as plain data; `name` and `config_name` name them in errors.
inline hf_tokenizer_data hf_read_data(std::string_view json, const std::string& name,
                                      std::optional<std::string_view> config_json, std::string config_name) {
    const hf_json_reader r(name);
    hf_tokenizer_data data;
    try {
        const nlohmann::json doc = r.parse(json);
        r.object(doc, "(document)");
        hf_model(r, r.member(doc, "", "model"), data.model);
        if (const auto* a = r.optional_member(doc, "", "added_tokens")) hf_added_tokens(r, *a, data.added_tokens);
        if (const auto* n = r.optional_member(doc, "", "normalizer")) hf_normalizer(r, *n, "normalizer", data.normalizer, 0);
        if (const auto* p = r.optional_member(doc, "", "pre_tokenizer"))
            hf_pre_tokenizer(r, *p, "pre_tokenizer", data.pre_tokenizer, 0);
        if (const auto* p = r.optional_member(doc, "", "post_processor"))
            hf_post_processor(r, *p, "post_processor", data.post, 0);
        if (const auto* d = r.optional_member(doc, "", "decoder")) {
            data.decoder.emplace();
            hf_decoder(r, *d, "decoder", *data.decoder, 0);
        }
    } catch (const nlohmann::json::exception& e) {  // none is expected: every access is checked first
        throw model_format_error(name, "(document)", "a tokenizer.json", e.what());
    }
    if (config_json) {
        const hf_json_reader c(std::move(config_name));
        try {
            hf_tokenizer_config_of(c, c.parse(*config_json), data.config);
        } catch (const nlohmann::json::exception& e) {
            throw model_format_error(c.file(), "(document)", "a tokenizer_config.json", e.what());
        }
    }
    return data;
}

// The tokenizer of `data` read from the file `name`.
inline hf_tokenizer hf_build(hf_tokenizer_data data, const std::string& name) {
    try {
        return hf_tokenizer(std::move(data));
    } catch (const std::invalid_argument& e) {  // what the stages' classes refuse beyond the reader's checks
        throw model_format_error(name, "(tokenizer)", "a consistent tokenizer", e.what());
    }
}

inline hf_tokenizer hf_read(std::string_view json, std::string name, std::optional<std::string_view> config_json,
                            std::string config_name) {
    return hf_build(hf_read_data(json, name, config_json, std::move(config_name)), name);
}

}  // namespace detail

// tokenizer.json's text (`name` names it in errors) and, optionally,
// tokenizer_config.json's. Throws model_format_error for anything malformed or
// unsupported (see the top of this file).
inline hf_tokenizer read_hf_tokenizer_json(std::string_view json, std::string name,
                                           std::optional<std::string_view> config_json = {}) {
    std::string config_name = name + " (tokenizer_config.json)";
    return detail::hf_read(json, std::move(name), config_json, std::move(config_name));
}

// The same as plain data, to be changed before it becomes a tokenizer (a GGUF file's
// tokenizer.huggingface.json takes its special tokens and chat template from the GGUF
// metadata); hf_tokenizer(data) may then throw std::invalid_argument.
inline hf_tokenizer_data read_hf_tokenizer_data(std::string_view json, std::string name,
                                                std::optional<std::string_view> config_json = {}) {
    std::string config_name = name + " (tokenizer_config.json)";
    return detail::hf_read_data(json, name, config_json, std::move(config_name));
}

// A folder holding tokenizer.json (and perhaps tokenizer_config.json), or the path of
// a tokenizer.json (its folder's tokenizer_config.json is read where present).
inline hf_tokenizer read_hf_tokenizer(const std::filesystem::path& folder_or_tokenizer_json) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const bool folder = fs::is_directory(folder_or_tokenizer_json, ec);
    const fs::path json_path = folder ? folder_or_tokenizer_json / "tokenizer.json" : folder_or_tokenizer_json;
    const fs::path config_path = json_path.parent_path() / "tokenizer_config.json";
    const std::string json = detail::hf_read_file(json_path);
    std::optional<std::string> config;
    if (fs::is_regular_file(config_path, ec)) config = detail::hf_read_file(config_path);
    return detail::hf_read(json, json_path.string(), config ? std::optional<std::string_view>(*config) : std::nullopt,
                           config_path.string());
}

}  // namespace kvdecode
