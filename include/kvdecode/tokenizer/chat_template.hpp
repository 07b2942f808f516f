#pragma once
// Chat templates: a conversation rendered as the text a chat model was trained on,
// byte for byte as transformers' tokenizer.apply_chat_template(messages,
// tokenize=False, add_generation_prompt=...) renders it, for the template families
// below. There is no Jinja engine: recognize_chat_template() tells the family from
// distinctive pieces of the template string (tokenizer_config.json's chat_template),
// chat_options_from_template() reads the settings a template carries (ChatML's
// default system message, Llama 3.1's date), and render_chat() writes the text in C++.
//
// Families (the `--chat-template` names), and the real templates each was checked
// against (tests/data/chat_templates.json: transformers 5.17.0 renderings of 13
// conversations x add_generation_prompt, made by tools/chat_templates/):
//   chatml              "<|im_start|>ROLE\nCONTENT<|im_end|>\n"; a default system
//                       message first when the first message is not a system one and
//                       the template has one. Qwen/Qwen2-7B-Instruct and its GGUF copy
//                       ("You are a helpful assistant."), Qwen/Qwen2.5-Instruct ("You
//                       are Qwen, created by Alibaba Cloud. ..."), HuggingFaceTB/
//                       SmolLM2-135M-Instruct (its own default), teknium/OpenHermes-2.5-
//                       Mistral-7B (plain ChatML, as SmolLM-Instruct).
//   llama3              meta-llama/Meta-Llama-3-8B-Instruct: BOS, then
//                       "<|start_header_id|>ROLE<|end_header_id|>\n\nTRIM(CONTENT)<|eot_id|>".
//   llama3.1            meta-llama/Llama-3.1-8B-Instruct, Llama-3.2-3B-Instruct (and
//                       3.3, whose template is 3.1's): a system header always, with
//                       "Cutting Knowledge Date: December 2023\nToday Date: DATE\n\n"
//                       before the (trimmed) system message; tool/ipython messages as
//                       "ipython" with their content as a JSON string. DATE: 3.1's
//                       template says "26 Jul 2024"; 3.2's calls strftime_now, so
//                       transformers writes today's local date ("%d %b %Y"):
//                       chat_options_from_template() does the same (today_date_string()).
//                       Not rendered: tools / builtin_tools / tool_calls (the
//                       conversation has only role and content).
//   zephyr              HuggingFaceH4/zephyr-7b-beta, TinyLlama/TinyLlama-1.1B-Chat-v1.0
//                       (the same template): "<|ROLE|>\nCONTENT" + EOS + "\n" for
//                       system, user and assistant; other roles are left out.
//   mistral-legacy-v0.1 mistralai/Mistral-7B-Instruct-v0.1's original template:
//                       "[INST] U [/INST]" and "A" + EOS + " "; user/assistant only.
//   mistral-legacy      Mistral-7B-Instruct-v0.2's original, Mixtral-8x7B-Instruct-v0.1:
//                       as above with "A" + EOS.
//   mistral-v1          Mistral-7B-Instruct-v0.1/v0.2's updated templates: " [INST] U
//                       [/INST]", " A" + EOS; an optional first system message goes
//                       before the first user message ("S\n\nU").
//   mistral-v3          Mistral-7B-Instruct-v0.3 (the v3 template, as in
//                       Mistral-Large-Instruct-2407): "[INST] U[/INST]", " TRIM(A)" +
//                       EOS; the system message goes before the LAST message when that
//                       is a user one, and is dropped otherwise (as the template does).
//   mistral-v3-tekken   Mistral-Nemo-Instruct-2407: "[INST]U[/INST]", "A" + EOS.
//   llama2              meta-llama/Llama-2-7b-chat-hf: BOS "[INST] STRIP(U) [/INST]",
//                       " STRIP(A) " EOS; a first system message as "<<SYS>>\nS\n<</SYS>>\n\n"
//                       inside the first user message. add_generation_prompt is ignored
//                       (the template never reads it); roles other than user/assistant
//                       after the first message are left out, as the template does.
// TRIM/STRIP are Python's str.strip(): Unicode whitespace (U+0009-000D, U+001C-001F,
// space, U+0085, U+00A0, U+1680, U+2000-200A, U+2028, U+2029, U+202F, U+205F, U+3000).
//
// What a template raises is a std::invalid_argument carrying the template's own words:
// "Conversation roles must alternate user/assistant/user/assistant/..." (mistral-legacy,
// llama2), "After the optional system message, conversation roles must alternate ..."
// (mistral-v1/v3), "Only user and assistant roles are supported!" and its longer
// form, "Tool call IDs should be alphanumeric strings with length 9!" (mistral-v3: a
// tool message, whose id a chat_message cannot carry). An empty conversation is an
// error in every family (most templates read messages[0]).
//
// Not matched exactly, so not recognized (name the family with --chat-template to use
// it anyway): ChatML templates that emit bos_token/eos_token or build the system
// message from a variable (zephyr-7b-gemma, stable-code), reasoning templates (Qwen3's
// <think>), Llama 3.2 Vision (<|image|>). Recognized, with a difference: Qwen2.5's
// template wraps "tool" messages in <tool_response> and leaves out roles other than
// system/user/assistant/tool, where render_chat(chatml) writes every role as it is.
//
// Threads: everything here is a pure function of its arguments (today_date_string()
// reads the clock).

#include <array>
#include <cstddef>
#include <ctime>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kvdecode/tokenizer/utf8.hpp"

namespace kvdecode {

struct chat_message {
    std::string role;     // "system", "user", "assistant", or what the template knows
    std::string content;
};

enum class chat_format {
    chatml,
    llama3,
    llama3_1,
    zephyr,
    mistral_legacy_v0_1,
    mistral_legacy,
    mistral_v1,
    mistral_v3,
    mistral_v3_tekken,
    llama2,
};

inline constexpr std::array<std::pair<chat_format, std::string_view>, 10> chat_format_names{{
    {chat_format::chatml, "chatml"},
    {chat_format::llama3, "llama3"},
    {chat_format::llama3_1, "llama3.1"},
    {chat_format::zephyr, "zephyr"},
    {chat_format::mistral_legacy_v0_1, "mistral-legacy-v0.1"},
    {chat_format::mistral_legacy, "mistral-legacy"},
    {chat_format::mistral_v1, "mistral-v1"},
    {chat_format::mistral_v3, "mistral-v3"},
    {chat_format::mistral_v3_tekken, "mistral-v3-tekken"},
    {chat_format::llama2, "llama2"},
}};

inline std::string_view to_string(chat_format f) noexcept {
    for (const auto& [format, name] : chat_format_names)
        if (format == f) return name;
    return "unknown";
}

// "chatml, llama3, ..., llama2": the names parse_chat_format() accepts.
inline std::string chat_format_choices() {
    std::string out;
    for (const auto& [format, name] : chat_format_names) {
        if (!out.empty()) out += ", ";
        out += name;
    }
    return out;
}

inline std::optional<chat_format> parse_chat_format(std::string_view name) noexcept {
    for (const auto& [format, n] : chat_format_names)
        if (n == name) return format;
    return std::nullopt;
}

// As parse_chat_format(); an unknown name is a std::invalid_argument naming the choices.
inline chat_format chat_format_named(std::string_view name) {
    if (const auto f = parse_chat_format(name)) return *f;
    throw std::invalid_argument("kvdecode: unknown chat template name \"" + std::string(name) +
                                "\"; --chat-template takes one of: " + chat_format_choices());
}

struct chat_render_options {
    // End with the header of an assistant turn, for the model to continue (what a
    // prompt for generation wants; transformers' own default is false).
    bool add_generation_prompt = true;
    // The tokenizer's bos_token / eos_token texts (templates write them as text; the
    // tokenizer then encodes them as their special tokens).
    std::string bos_token{};
    std::string eos_token{};
    // chatml: the system message put first when the conversation does not start with
    // one (Qwen2's "You are a helpful assistant."); nullopt: none.
    std::optional<std::string> default_system;
    // llama3.1: the "Today Date: " of the system header.
    std::string date_string = "26 Jul 2024";
};

namespace detail::chat {

// The template's text in a canonical form: comments left out, whitespace outside
// string literals removed, every literal written '...' with its escapes decoded (so
// '\n' and a newline typed inside the quotes read the same, and "x" reads as 'x'),
// and message.role / message.content spelled message['role'] / message['content'].
// Quotes begin literals only inside {{ }} and {% %}.
// `literals` gets every literal's decoded text.
inline std::string canonical(std::string_view t, std::vector<std::string>* literals = nullptr) {
    std::string out;
    out.reserve(t.size());
    bool in_tag = false;  // inside {{ }} or {% %}, where quotes begin string literals
    for (std::size_t i = 0; i < t.size();) {
        const char c = t[i];
        const std::string_view two = t.substr(i, 2);
        if (!in_tag && two == "{#") {  // a comment: left out
            const std::size_t end = t.find("#}", i + 2);
            i = end == std::string_view::npos ? t.size() : end + 2;
        } else if (!in_tag && (two == "{{" || two == "{%")) {
            in_tag = true;
            out += two;
            i += 2;
        } else if (in_tag && (two == "}}" || two == "%}")) {
            in_tag = false;
            out += two;
            i += 2;
        } else if (in_tag && (c == '\'' || c == '"')) {
            std::string lit;
            std::size_t j = i + 1;
            for (; j < t.size() && t[j] != c; ++j) {
                if (t[j] == '\\' && j + 1 < t.size()) {
                    const char e = t[++j];
                    lit += e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
                } else {
                    lit += t[j];
                }
            }
            out += '\'';
            out += lit;
            out += '\'';
            if (literals) literals->push_back(std::move(lit));
            i = j + 1;
        } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            ++i;
        } else {
            out += c;
            ++i;
        }
    }
    for (const auto& [from, to] : {std::pair<std::string_view, std::string_view>{"message.role", "message['role']"},
                                   {"message.content", "message['content']"}}) {
        for (std::size_t p = 0; (p = out.find(from, p)) != std::string::npos; p += to.size()) out.replace(p, from.size(), to);
    }
    return out;
}

inline bool has(std::string_view text, std::string_view piece) noexcept { return text.find(piece) != std::string_view::npos; }

inline bool has_literal(const std::vector<std::string>& literals, std::string_view l) noexcept {
    for (const std::string& s : literals)
        if (s == l) return true;
    return false;
}

// Python's str.isspace() for one code point.
inline bool is_python_space(char32_t c) noexcept {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Python's str.strip() (Jinja's trim filter), on UTF-8; invalid bytes are never space.
inline std::string strip(std::string_view s) {
    std::size_t b = 0, e = s.size();
    while (b < e) {
        const utf8::prefix p = utf8::read_prefix(s.substr(b, e - b));
        if (!p.valid || !is_python_space(utf8::decode_valid(s.substr(b), p.length))) break;
        b += p.length;
    }
    while (e > b) {
        std::size_t start = e - 1;  // the last character's first byte
        while (start > b && e - start < 4 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
        const utf8::prefix p = utf8::read_prefix(s.substr(start, e - start));
        if (!p.valid || start + p.length != e || !is_python_space(utf8::decode_valid(s.substr(start), p.length))) break;
        e = start;
    }
    return std::string(s.substr(b, e - b));
}

// Python's json.dumps(s, ensure_ascii=False) (transformers' tojson) of a string.
inline std::string json_string(std::string_view s) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string out = "\"";
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        switch (ch) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            default:
                if (c < 0x20) {
                    out += "\\u00";
                    out += hex[c >> 4];
                    out += hex[c & 15];
                } else {
                    out += ch;
                }
        }
    }
    return out + "\"";
}

[[noreturn]] inline void raise(chat_format f, const std::string& what) {
    throw std::invalid_argument("kvdecode: chat template " + std::string(to_string(f)) + ": " + what);
}

inline constexpr std::string_view alternate = "Conversation roles must alternate user/assistant/user/assistant/...";
inline constexpr std::string_view alternate_after_system =
    "After the optional system message, conversation roles must alternate user/assistant/user/assistant/...";
inline constexpr std::string_view only_user_assistant = "Only user and assistant roles are supported!";
inline constexpr std::string_view only_user_assistant_system =
    "Only user and assistant roles are supported, with the exception of an initial optional system message!";

// The first message when it is a system one, and the rest.
struct split_system {
    const chat_message* system = nullptr;
    std::span<const chat_message> rest;
    explicit split_system(std::span<const chat_message> m) : rest(m) {
        if (!m.empty() && m.front().role == "system") system = &m.front(), rest = m.subspan(1);
    }
};

inline std::string chatml(std::span<const chat_message> messages, const chat_render_options& o) {
    std::string out;
    if (o.default_system && messages.front().role != "system")
        out += "<|im_start|>system\n" + *o.default_system + "<|im_end|>\n";
    for (const chat_message& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
    if (o.add_generation_prompt) out += "<|im_start|>assistant\n";
    return out;
}

inline std::string llama3_turn(std::string_view role, std::string_view body) {
    return "<|start_header_id|>" + std::string(role) + "<|end_header_id|>\n\n" + std::string(body) + "<|eot_id|>";
}

inline std::string llama3(std::span<const chat_message> messages, const chat_render_options& o) {
    std::string out = o.bos_token;
    for (const chat_message& m : messages) out += llama3_turn(m.role, strip(m.content));
    if (o.add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
    return out;
}

inline std::string llama3_1(std::span<const chat_message> messages, const chat_render_options& o) {
    const split_system s(messages);
    std::string out = o.bos_token + "<|start_header_id|>system<|end_header_id|>\n\n";
    out += "Cutting Knowledge Date: December 2023\nToday Date: " + o.date_string + "\n\n";
    if (s.system) out += strip(s.system->content);
    out += "<|eot_id|>";
    for (const chat_message& m : s.rest) {
        if (m.role == "tool" || m.role == "ipython")  // a string is iterable: tojson
            out += llama3_turn("ipython", json_string(m.content));
        else
            out += llama3_turn(m.role, strip(m.content));
    }
    if (o.add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
    return out;
}

inline std::string zephyr(std::span<const chat_message> messages, const chat_render_options& o) {
    std::string out;
    for (const chat_message& m : messages)
        if (m.role == "user" || m.role == "system" || m.role == "assistant")
            out += "<|" + m.role + "|>\n" + m.content + o.eos_token + "\n";
    if (o.add_generation_prompt) out += "<|assistant|>\n";
    return out;
}

inline std::string mistral_legacy(chat_format f, std::span<const chat_message> messages, const chat_render_options& o) {
    std::string out = o.bos_token;
    for (std::size_t i = 0; i < messages.size(); ++i) {
        const chat_message& m = messages[i];
        if ((m.role == "user") != (i % 2 == 0)) raise(f, std::string(alternate));
        if (m.role == "user") out += "[INST] " + m.content + " [/INST]";
        else if (m.role == "assistant") out += m.content + o.eos_token + (f == chat_format::mistral_legacy_v0_1 ? " " : "");
        else raise(f, std::string(only_user_assistant));
    }
    return out;
}

inline std::string mistral_v1(std::span<const chat_message> messages, const chat_render_options& o) {
    const split_system s(messages);
    std::string out = o.bos_token;
    for (std::size_t i = 0; i < s.rest.size(); ++i) {
        const chat_message& m = s.rest[i];
        if ((m.role == "user") != (i % 2 == 0)) raise(chat_format::mistral_v1, std::string(alternate_after_system));
        if (m.role == "user")
            out += " [INST] " + (i == 0 && s.system ? s.system->content + "\n\n" : std::string()) + m.content + " [/INST]";
        else if (m.role == "assistant") out += " " + m.content + o.eos_token;
        else raise(chat_format::mistral_v1, std::string(only_user_assistant_system));
    }
    return out;
}

inline std::string mistral_v3(chat_format f, std::span<const chat_message> messages, const chat_render_options& o) {
    const bool tekken = f == chat_format::mistral_v3_tekken;
    const split_system s(messages);
    // The template checks the alternation first, over the messages that are not tool results.
    std::size_t index = 0;
    for (const chat_message& m : s.rest) {
        if (m.role == "tool" || m.role == "tool_results") continue;
        if ((m.role == "user") != (index % 2 == 0)) raise(f, std::string(alternate_after_system));
        ++index;
    }
    std::string out = o.bos_token;
    const std::string_view open = tekken ? "[INST]" : "[INST] ";
    for (std::size_t i = 0; i < s.rest.size(); ++i) {
        const chat_message& m = s.rest[i];
        if (m.role == "user") {
            out += open;
            if (i + 1 == s.rest.size() && s.system) out += s.system->content + "\n\n";
            out += m.content + "[/INST]";
        } else if (m.role == "assistant") {
            out += tekken ? m.content + o.eos_token : " " + strip(m.content) + o.eos_token;
        } else if (m.role == "tool" || m.role == "tool_results") {
            raise(f, "Tool call IDs should be alphanumeric strings with length 9! (a tool message needs a tool_call_id, "
                     "which a chat_message does not carry)");
        } else {
            raise(f, std::string(only_user_assistant_system));
        }
    }
    return out;
}

inline std::string llama2(std::span<const chat_message> messages, const chat_render_options& o) {
    const split_system s(messages);
    std::string out;
    for (std::size_t i = 0; i < s.rest.size(); ++i) {
        const chat_message& m = s.rest[i];
        if ((m.role == "user") != (i % 2 == 0)) raise(chat_format::llama2, std::string(alternate));
        const std::string content =
            i == 0 && s.system ? "<<SYS>>\n" + s.system->content + "\n<</SYS>>\n\n" + m.content : m.content;
        if (m.role == "user") out += o.bos_token + "[INST] " + strip(content) + " [/INST]";
        else if (m.role == "assistant") out += " " + strip(content) + " " + o.eos_token;
    }
    return out;
}

}  // namespace detail::chat

// The conversation as the family's template renders it (see the top of this file).
// Throws std::invalid_argument for what the template refuses, and for an empty
// conversation.
inline std::string render_chat(chat_format f, std::span<const chat_message> messages, const chat_render_options& o = {}) {
    namespace c = detail::chat;
    if (messages.empty()) c::raise(f, "the conversation has no messages");
    switch (f) {
        case chat_format::chatml: return c::chatml(messages, o);
        case chat_format::llama3: return c::llama3(messages, o);
        case chat_format::llama3_1: return c::llama3_1(messages, o);
        case chat_format::zephyr: return c::zephyr(messages, o);
        case chat_format::mistral_legacy_v0_1:
        case chat_format::mistral_legacy: return c::mistral_legacy(f, messages, o);
        case chat_format::mistral_v1: return c::mistral_v1(messages, o);
        case chat_format::mistral_v3:
        case chat_format::mistral_v3_tekken: return c::mistral_v3(f, messages, o);
        case chat_format::llama2: return c::llama2(messages, o);
    }
    c::raise(f, "unknown chat format");
}

// The family of a Jinja chat template, told by distinctive pieces of it (whitespace
// and quoting do not matter); nullopt when it is none of them, or one rendered
// differently (see the top of this file).
inline std::optional<chat_format> recognize_chat_template(std::string_view jinja) {
    using detail::chat::has;
    using detail::chat::has_literal;
    std::vector<std::string> lit;
    const std::string t = detail::chat::canonical(jinja, &lit);

    if (has(t, "<|im_start|>")) {
        if (has(t, "bos_token") || has(t, "eos_token") || has(t, "system_message") || has(t, "<think>") ||
            has(t, "reasoning_content"))
            return std::nullopt;
        if (!has(t, "'<|im_start|>'+message['role']+'\n'+message['content']+'<|im_end|>'")) return std::nullopt;
        if (!has(t, "ifadd_generation_prompt") || !has_literal(lit, "<|im_start|>assistant\n")) return std::nullopt;
        return chat_format::chatml;
    }
    if (has(t, "<|start_header_id|>") && has(t, "<|eot_id|>")) {
        if (has(t, "<|image|>") || !has(t, "|trim+'<|eot_id|>'") || !has(t, "ifadd_generation_prompt")) return std::nullopt;
        if (has(t, "Cutting Knowledge Date: December 2023")) return chat_format::llama3_1;
        if (has(t, "setcontent=bos_token+content")) return chat_format::llama3;
        return std::nullopt;
    }
    if (has(t, "<<SYS>>")) {
        if (has(t, "bos_token+'[INST] '+content.strip()+' [/INST]'") &&
            has(t, "'<<SYS>>\n'+system_message+'\n<</SYS>>\n\n'+message['content']") &&
            has(t, "' '+content.strip()+' '+eos_token"))
            return chat_format::llama2;
        return std::nullopt;
    }
    if (has(t, "[INST]")) {
        if (has(t, "{{bos_token}}{%formessageinmessages%}") && has(t, "'[INST] '+message['content']+' [/INST]'") &&
            has(t, "raise_exception('Only user and assistant roles are supported!')")) {
            if (has(t, "message['content']+eos_token+' '}}")) return chat_format::mistral_legacy_v0_1;
            if (has(t, "message['content']+eos_token}}")) return chat_format::mistral_legacy;
            return std::nullopt;
        }
        if (has(t, "ifloop.firstandsystem_messageisdefined") &&
            has(t, "' [INST] '+system_message+'\n\n'+message['content']+' [/INST]'") &&
            has(t, "' '+message['content']+eos_token"))
            return chat_format::mistral_v1;
        if (has(t, "ifloop.lastandsystem_messageisdefined")) {
            if (has(t, "'[INST] '+system_message+'\n\n'+message['content']+'[/INST]'") &&
                has(t, "' '+message['content']|trim+eos_token"))
                return chat_format::mistral_v3;
            if (has(t, "'[INST]'+system_message+'\n\n'+message['content']+'[/INST]'") &&
                has(t, "elifmessage['role']=='assistant'%}{{-message['content']+eos_token"))
                return chat_format::mistral_v3_tekken;
        }
        return std::nullopt;
    }
    if (has(t, "'<|user|>\n'+message['content']+eos_token") && has(t, "'<|system|>\n'+message['content']+eos_token") &&
        has(t, "'<|assistant|>\n'+message['content']+eos_token") && has(t, "ifloop.lastandadd_generation_prompt") &&
        has_literal(lit, "<|assistant|>"))
        return chat_format::zephyr;
    return std::nullopt;
}

// As recognize_chat_template(); an unrecognized template is a std::invalid_argument
// naming the --chat-template choices.
inline chat_format require_chat_format(std::string_view jinja) {
    if (const auto f = recognize_chat_template(jinja)) return *f;
    std::string head(jinja.substr(0, 80));
    for (char& c : head)
        if (c == '\n') c = ' ';
    throw std::invalid_argument("kvdecode: the chat template is not one kvdecode can render exactly (it begins \"" + head +
                                (jinja.size() > 80 ? "...\"" : "\"") + "); name its family with --chat-template: " +
                                chat_format_choices());
}

// The ChatML default system message a template writes when the conversation does not
// begin with one: a single string literal "<|im_start|>system\n...<|im_end|>" (Qwen2,
// Qwen2.5, SmolLM2); nullopt when there is none.
inline std::optional<std::string> chatml_default_system(std::string_view jinja) {
    std::vector<std::string> lit;
    detail::chat::canonical(jinja, &lit);
    constexpr std::string_view head = "<|im_start|>system\n", tail = "<|im_end|>";
    for (const std::string& l : lit) {
        if (!l.starts_with(head)) continue;
        const std::size_t end = l.find(tail, head.size());
        if (end != std::string::npos) return l.substr(head.size(), end - head.size());
    }
    return std::nullopt;
}

// Today's local date as Python's datetime.now().strftime("%d %b %Y") writes it in the
// C locale ("01 Dec 2026"): what transformers' strftime_now gives Llama 3.2's template.
inline std::string today_date_string() {
    static constexpr std::array<std::string_view, 12> months{"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                             "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    const std::time_t now = std::time(nullptr);
    std::tm local{};
    localtime_r(&now, &local);
    const int day = local.tm_mday;
    std::string out{static_cast<char>('0' + day / 10), static_cast<char>('0' + day % 10), ' '};
    out += months[static_cast<std::size_t>(local.tm_mon)];
    return out + " " + std::to_string(1900 + local.tm_year);
}

// The settings a template carries, for render_chat(): ChatML's default system message,
// and Llama 3.1's date (the template's literal date_string, or today's date where the
// template calls strftime_now). add_generation_prompt, bos_token and eos_token are the
// caller's to set.
inline chat_render_options chat_options_from_template(std::string_view jinja) {
    chat_render_options o;
    o.default_system = chatml_default_system(jinja);
    const std::string t = detail::chat::canonical(jinja);
    if (t.find("strftime_now") != std::string::npos) {
        o.date_string = today_date_string();
    } else if (const std::size_t p = t.find("setdate_string='"); p != std::string::npos) {
        const std::size_t b = p + 16, e = t.find('\'', b);
        if (e != std::string::npos) o.date_string = t.substr(b, e - b);
    }
    return o;
}

}  // namespace kvdecode
