#pragma once
// A JSON document read from an untrusted file (Hugging Face's config.json and its
// neighbours), with typed getters whose failures name the file, the key and what was
// found: file_format_error, never one of nlohmann's own exceptions.

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "kvdecode/core/error.hpp"

namespace kvdecode::detail {

class json_file {
public:
    using json = nlohmann::json;

    // Parses `text`; `name` stands for the file in errors.
    json_file(std::string_view text, std::string name) : name_(std::move(name)) {
        try {
            root_ = json::parse(text.begin(), text.end());
        } catch (const json::exception& e) {
            fail("file", std::string("is not valid JSON (") + e.what() + ")");
        }
        if (!root_.is_object()) fail("file", "is JSON but not an object");
    }

    // Reads and parses a file; a missing or unreadable one is a file_format_error.
    static json_file read(const std::filesystem::path& path) { return json_file(read_text(path), path.string()); }

    static std::string read_text(const std::filesystem::path& path) {
        std::error_code ec;
        if (!std::filesystem::is_regular_file(path, ec))
            throw file_format_error(path.string(), "file", "expected an existing regular file, found none at this path");
        std::ifstream in(path, std::ios::binary);
        std::ostringstream s;
        s << in.rdbuf();
        if (!in && !in.eof()) throw file_format_error(path.string(), "file", "cannot be read");
        return s.str();
    }

    const std::string& name() const noexcept { return name_; }
    const json& root() const noexcept { return root_; }

    [[noreturn]] void fail(const std::string& field, const std::string& problem) const {
        throw file_format_error(name_, field, problem);
    }
    static std::string field(std::string_view key) { return "key '" + std::string(key) + "'"; }

    // The member `key` of `object` (the root by default), or nullptr where it is absent
    // or JSON null (Hugging Face writes null for "not set").
    const json* find(std::string_view key, const json* object = nullptr) const {
        const json& o = object ? *object : root_;
        const auto it = o.find(key);
        return it == o.end() || it->is_null() ? nullptr : &*it;
    }

    std::optional<std::string> string(std::string_view key, const json* object = nullptr) const {
        const json* v = find(key, object);
        if (!v) return std::nullopt;
        if (!v->is_string()) fail(field(key), "is " + v->dump() + "; expected a string");
        return v->get<std::string>();
    }
    std::optional<bool> boolean(std::string_view key, const json* object = nullptr) const {
        const json* v = find(key, object);
        if (!v) return std::nullopt;
        if (!v->is_boolean()) fail(field(key), "is " + v->dump() + "; expected true or false");
        return v->get<bool>();
    }
    std::optional<double> number(std::string_view key, const json* object = nullptr) const {
        const json* v = find(key, object);
        if (!v) return std::nullopt;
        if (!v->is_number()) fail(field(key), "is " + v->dump() + "; expected a number");
        return v->get<double>();
    }
    // A non-negative integer at most `max`.
    std::optional<std::uint64_t> count(std::string_view key, std::uint64_t max, const json* object = nullptr) const {
        const json* v = find(key, object);
        if (!v) return std::nullopt;
        return count_value(*v, key, max);
    }
    std::uint64_t count_value(const json& v, std::string_view key, std::uint64_t max) const {
        if (!v.is_number_unsigned() || v.get<std::uint64_t>() > max)
            fail(field(key), "is " + v.dump() + "; expected an integer from 0 to " + std::to_string(max));
        return v.get<std::uint64_t>();
    }
    // An integer, or a list of integers (eos_token_id), each at most `max`.
    std::vector<std::uint64_t> counts(std::string_view key, std::uint64_t max, const json* object = nullptr) const {
        const json* v = find(key, object);
        if (!v) return {};
        if (!v->is_array()) return {count_value(*v, key, max)};
        std::vector<std::uint64_t> out;
        for (const json& e : *v) out.push_back(count_value(e, key, max));
        return out;
    }

private:
    std::string name_;
    json root_;
};

}  // namespace kvdecode::detail
