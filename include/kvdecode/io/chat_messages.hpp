#pragma once
// Reads a conversation for render_chat() (tokenizer/chat_template.hpp) from a JSON
// file: a list of messages, or an object whose "messages" is that list (the shape of
// an OpenAI-style request body):
//   [{"role": "system", "content": "..."}, {"role": "user", "content": "..."}]
// Each message is an object with a string "role" (not empty) and a string "content";
// any other key (tool_calls, name, ...) would change what a template renders, so it is
// refused rather than dropped. Failures are file_format_error: "kvdecode: FILE:
// FIELD: problem", FIELD naming the entry ("message 2", "message 2: key 'content'").
// Needs nlohmann-json.

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "kvdecode/core/error.hpp"
#include "kvdecode/io/detail/json_file.hpp"
#include "kvdecode/tokenizer/chat_template.hpp"

namespace kvdecode {

// Parses `text`; `name` stands for the file in errors.
inline std::vector<chat_message> parse_chat_messages(std::string_view text, const std::string& name) {
    using json = nlohmann::json;
    json root;
    try {
        root = json::parse(text.begin(), text.end());
    } catch (const json::exception& e) {
        throw file_format_error(name, "file", std::string("is not valid JSON (") + e.what() + ")");
    }
    const json* list = &root;
    if (root.is_object()) {
        const auto it = root.find("messages");
        if (it == root.end()) throw file_format_error(name, "file", "is a JSON object without \"messages\"; expected a list of messages");
        list = &*it;
    }
    if (!list->is_array())
        throw file_format_error(name, root.is_object() ? "key 'messages'" : "file",
                                "is " + std::string(list->type_name()) + "; expected a list of {\"role\", \"content\"} objects");
    if (list->empty()) throw file_format_error(name, "file", "holds no messages");
    std::vector<chat_message> out;
    out.reserve(list->size());
    for (std::size_t i = 0; i < list->size(); ++i) {
        const json& m = (*list)[i];
        const std::string entry = "message " + std::to_string(i);
        if (!m.is_object()) throw file_format_error(name, entry, "is " + m.dump() + "; expected an object with \"role\" and \"content\"");
        for (const auto& [key, value] : m.items())
            if (key != "role" && key != "content")
                throw file_format_error(name, entry + ": key '" + key + "'",
                                        "is not read (only \"role\" and \"content\" are; chat templates that use it are not rendered)");
        chat_message message;
        for (const std::string_view key : {"role", "content"}) {
            const auto it = m.find(key);
            const std::string field = entry + ": key '" + std::string(key) + "'";
            if (it == m.end()) throw file_format_error(name, field, "is missing");
            if (!it->is_string()) throw file_format_error(name, field, "is " + it->dump() + "; expected a string");
            (key == "role" ? message.role : message.content) = it->get<std::string>();
        }
        if (message.role.empty()) throw file_format_error(name, entry + ": key 'role'", "is empty");
        out.push_back(std::move(message));
    }
    return out;
}

inline std::vector<chat_message> read_chat_messages(const std::filesystem::path& path) {
    return parse_chat_messages(detail::json_file::read_text(path), path.string());
}

}  // namespace kvdecode
