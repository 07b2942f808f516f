#pragma once
// A small JSON reader for the golden files (test-only; the library needs none).

#include <cstddef>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace kvtest {

struct json {
    using array = std::vector<json>;
    using object = std::map<std::string, json>;
    std::variant<std::nullptr_t, bool, double, std::string, array, object> value;

    bool is_null() const { return std::holds_alternative<std::nullptr_t>(value); }
    bool is_bool() const { return std::holds_alternative<bool>(value); }
    bool is_string() const { return std::holds_alternative<std::string>(value); }
    double number() const { return std::get<double>(value); }
    bool boolean() const { return std::get<bool>(value); }
    const std::string& string() const { return std::get<std::string>(value); }
    const array& items() const { return std::get<array>(value); }
    const object& fields() const { return std::get<object>(value); }
    const json& operator[](const std::string& key) const { return fields().at(key); }
    bool has(const std::string& key) const { return fields().count(key) != 0; }

    template <class T>
    std::vector<T> numbers() const {
        std::vector<T> out;
        for (const json& j : items()) out.push_back(static_cast<T>(j.number()));
        return out;
    }

    static json parse(std::string_view text) {
        std::size_t at = 0;
        json j = parse_value(text, at);
        skip_space(text, at);
        if (at != text.size()) throw std::runtime_error("json: trailing data");
        return j;
    }

private:
    static void skip_space(std::string_view t, std::size_t& at) {
        while (at < t.size() && (t[at] == ' ' || t[at] == '\n' || t[at] == '\r' || t[at] == '\t')) ++at;
    }
    static void expect(std::string_view t, std::size_t& at, char c) {
        skip_space(t, at);
        if (at >= t.size() || t[at] != c) throw std::runtime_error(std::string("json: expected ") + c);
        ++at;
    }
    static json parse_value(std::string_view t, std::size_t& at) {
        skip_space(t, at);
        if (at >= t.size()) throw std::runtime_error("json: unexpected end");
        const char c = t[at];
        if (c == '{') {
            object o;
            ++at;
            skip_space(t, at);
            if (t[at] == '}') return ++at, json{o};
            for (;;) {
                skip_space(t, at);
                std::string key = parse_string(t, at);
                expect(t, at, ':');
                o.emplace(std::move(key), parse_value(t, at));
                skip_space(t, at);
                if (t[at] == ',') { ++at; continue; }
                expect(t, at, '}');
                return json{o};
            }
        }
        if (c == '[') {
            array a;
            ++at;
            skip_space(t, at);
            if (t[at] == ']') return ++at, json{a};
            for (;;) {
                a.push_back(parse_value(t, at));
                skip_space(t, at);
                if (t[at] == ',') { ++at; continue; }
                expect(t, at, ']');
                return json{a};
            }
        }
        if (c == '"') return json{parse_string(t, at)};
        if (t.substr(at, 4) == "true") return at += 4, json{true};
        if (t.substr(at, 5) == "false") return at += 5, json{false};
        if (t.substr(at, 4) == "null") return at += 4, json{nullptr};
        std::size_t used = 0;
        const double d = std::stod(std::string(t.substr(at, 64)), &used);
        at += used;
        return json{d};
    }
    static std::string parse_string(std::string_view t, std::size_t& at) {
        if (t[at] != '"') throw std::runtime_error("json: expected a string");
        std::string out;
        for (++at; at < t.size() && t[at] != '"'; ++at) {
            if (t[at] == '\\') {
                ++at;
                switch (t[at]) {
                    case 'n': out += '\n'; break;
                    case 't': out += '\t'; break;
                    case 'u': out += '?'; at += 4; break;  // not needed by the golden files
                    default: out += t[at];
                }
            } else {
                out += t[at];
            }
        }
        ++at;
        return out;
    }
};

}  // namespace kvtest
