// Chat templates: every reference in tests/data/chat_templates.json (transformers'
// apply_chat_template over real templates, made by tools/chat_templates/) rendered
// byte for byte; recognition of each real template and of whitespace/quoting
// variants; refusals; the conversation file reader; and the byte-level fixture's
// chat goldens through render_chat and the fixture tokenizer.

#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "kvdecode/core/error.hpp"
#include "kvdecode/io/chat_messages.hpp"
#include "kvdecode/io/hf_tokenizer.hpp"
#include "kvdecode/tokenizer/chat_template.hpp"
#include "support/temp_dir.hpp"
#include "support/test_data.hpp"

using namespace kvdecode;
using json = nlohmann::json;

namespace {

#ifndef KVDECODE_TESTS_DIR  // tests/ (CMake sets it; __FILE__ serves when run from where it was compiled)
#define KVDECODE_TESTS_DIR (std::filesystem::path(__FILE__).parent_path().parent_path().string())
#endif

const json& references() {
    static const json r = [] {
        const auto p = std::filesystem::path(KVDECODE_TESTS_DIR) / "data" / "chat_templates.json";
        INFO("reading " << p.string());
        std::ifstream in(p, std::ios::binary);
        REQUIRE(in);
        return json::parse(in);
    }();
    return r;
}

const json& template_entry(const std::string& key) {
    for (const json& t : references()["templates"])
        if (t["key"] == key) return t;
    FAIL("no template " << key);
    throw std::logic_error("unreachable");
}

std::vector<chat_message> messages_of(const json& list) {
    std::vector<chat_message> out;
    for (const json& m : list) out.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
    return out;
}

// What an invalid_argument from `f` says, or nullopt when nothing is thrown.
template <class F>
std::optional<std::string> refusal(F&& f) {
    try {
        f();
    } catch (const std::invalid_argument& e) {
        return std::string(e.what());
    }
    return std::nullopt;
}

bool contains(const std::string& s, const std::string& piece) { return s.find(piece) != std::string::npos; }

}  // namespace

TEST_CASE("render_chat reproduces transformers' apply_chat_template on real templates", "[tokenizer][chat]") {
    const json& r = references();
    REQUIRE(r["cases"].size() >= 400);
    int rendered = 0, refused = 0;
    for (const json& c : r["cases"]) {
        const json& t = template_entry(c["template"]);
        const std::string jinja = t["template"];
        const auto format = recognize_chat_template(jinja);
        REQUIRE(format);
        chat_render_options o = chat_options_from_template(jinja);
        o.add_generation_prompt = c["add_generation_prompt"];
        o.bos_token = t["bos_token"];
        o.eos_token = t["eos_token"];
        if (c["kwargs"].contains("date_string")) o.date_string = c["kwargs"]["date_string"];
        if (c.contains("today")) o.date_string = c["today"];  // the date strftime_now gave on that day
        const auto messages = messages_of(r["conversations"][c["conversation"].get<std::string>()]);
        INFO(c["template"].get<std::string>() << " / " << c["conversation"].get<std::string>()
                                              << " / add_generation_prompt " << c["add_generation_prompt"]);
        if (c.contains("text")) {
            CHECK(render_chat(*format, messages, o) == c["text"].get<std::string>());
            ++rendered;
        } else {
            const auto what = refusal([&] { render_chat(*format, messages, o); });
            REQUIRE(what);
            CHECK(contains(*what, c["error"].get<std::string>()));
            ++refused;
        }
    }
    CHECK(rendered > 300);
    CHECK(refused > 50);
}

TEST_CASE("recognize_chat_template: each real template's family and settings", "[tokenizer][chat]") {
    for (const json& t : references()["templates"]) {
        INFO(t["key"].get<std::string>() << " (" << t["model"].get<std::string>() << ")");
        const auto f = recognize_chat_template(t["template"].get<std::string>());
        REQUIRE(f);
        CHECK(to_string(*f) == t["format"].get<std::string>());
    }
    const auto system_of = [](const std::string& key) { return chatml_default_system(template_entry(key)["template"].get<std::string>()); };
    CHECK(system_of("qwen2") == "You are a helpful assistant.");
    CHECK(system_of("qwen2-gguf") == "You are a helpful assistant.");
    CHECK(system_of("qwen2.5") == "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
    CHECK(system_of("smollm2") == "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
    CHECK(!system_of("openhermes"));

    CHECK(chat_options_from_template(template_entry("llama3.1")["template"].get<std::string>()).date_string == "26 Jul 2024");
    const std::string today = chat_options_from_template(template_entry("llama3.2")["template"].get<std::string>()).date_string;
    CHECK(today == today_date_string());
    REQUIRE(today.size() == 11);  // "01 Dec 2026"
    CHECK(today[2] == ' ');
    CHECK(today[6] == ' ');
}

TEST_CASE("recognize_chat_template: whitespace, quoting and escapes do not matter", "[tokenizer][chat]") {
    const auto replaced = [](std::string s, const std::string& from, const std::string& to) {
        for (std::size_t p = 0; (p = s.find(from, p)) != std::string::npos; p += to.size()) s.replace(p, from.size(), to);
        return s;
    };
    for (const json& t : references()["templates"]) {
        const std::string jinja = t["template"];
        INFO(t["key"].get<std::string>());
        const auto f = recognize_chat_template(jinja);
        REQUIRE(f);
        CHECK(recognize_chat_template(replaced(replaced(jinja, "{{ ", "{{"), " }}", "}}")) == f);
        CHECK(recognize_chat_template(replaced(jinja, " + ", "\n    +  ")) == f);
        CHECK(recognize_chat_template(replaced(replaced(jinja, "%}", " %}"), "{%", "{% ")) == f);
    }
    // Double quotes and a typed newline for '\n' (the Qwen2 GGUF copy already has the latter).
    const std::string chatml = "{% for message in messages %}{{\"<|im_start|>\" + message.role + \"\n\" + message.content + "
                               "\"<|im_end|>\" + \"\\n\"}}{% endfor %}{% if add_generation_prompt %}{{ \"<|im_start|>assistant\\n\" }}{% endif %}";
    CHECK(recognize_chat_template(chatml) == chat_format::chatml);
    CHECK(!chatml_default_system(chatml));
}

TEST_CASE("recognize_chat_template: templates rendered otherwise are not recognized", "[tokenizer][chat]") {
    CHECK(!recognize_chat_template("INVALID TEMPLATE"));
    CHECK(!recognize_chat_template(""));
    // HuggingFaceH4/zephyr-7b-gemma-v0.1: ChatML with bos_token and a closing eos_token.
    CHECK(!recognize_chat_template(
        "{% if messages[0]['role'] == 'user' or messages[0]['role'] == 'system' %}{{ bos_token }}{% endif %}{% for message in "
        "messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if "
        "add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% elif messages[-1]['role'] == 'assistant' %}{{ eos_token }}{% "
        "endif %}"));
    // google/gemma-7b-it
    CHECK(!recognize_chat_template(
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in "
        "messages %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}"));
    // Phi-3: <|user|> turns closed by <|end|>, not eos_token.
    CHECK(!recognize_chat_template(
        "{{ bos_token }}{% for message in messages %}{{'<|' + message['role'] + '|>' + '\\n' + message['content'] + '<|end|>\\n' "
        "}}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"));
    // Meta-Llama-3-8B-Instruct's first template: the assistant header whatever add_generation_prompt says.
    CHECK(!recognize_chat_template(
        "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
        "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% "
        "set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"));
    // Mistral v7 ([SYSTEM_PROMPT]).
    CHECK(!recognize_chat_template(
        "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + "
        "'[/INST]' }}{% elif message['role'] == 'system' %}{{ '[SYSTEM_PROMPT] ' + message['content'] + '[/SYSTEM_PROMPT]' }}{% "
        "elif message['role'] == 'assistant' %}{{ ' ' + message['content'] + eos_token }}{% endif %}{% endfor %}"));
}

TEST_CASE("chat template names and refusals", "[tokenizer][chat]") {
    for (const auto& [format, name] : chat_format_names) {
        CHECK(parse_chat_format(name) == format);
        CHECK(to_string(format) == name);
        CHECK(chat_format_named(name) == format);
    }
    CHECK(!parse_chat_format("ChatML"));
    const auto unknown = refusal([] { chat_format_named("vicuna"); });
    REQUIRE(unknown);
    CHECK(contains(*unknown, "\"vicuna\""));
    for (const auto& [format, name] : chat_format_names) CHECK(contains(*unknown, std::string(name)));

    const auto unrecognized = refusal([] { require_chat_format("{{ 'INVALID TEMPLATE' }}"); });
    REQUIRE(unrecognized);
    CHECK(contains(*unrecognized, "--chat-template"));
    CHECK(contains(*unrecognized, chat_format_choices()));
    CHECK(contains(*unrecognized, "INVALID TEMPLATE"));

    const std::vector<chat_message> two_users{{"user", "a"}, {"user", "b"}};
    for (const chat_format f : {chat_format::mistral_legacy, chat_format::llama2})
        CHECK(contains(refusal([&] { render_chat(f, two_users); }).value_or(""),
                       "Conversation roles must alternate user/assistant/user/assistant/..."));
    for (const chat_format f : {chat_format::mistral_v1, chat_format::mistral_v3, chat_format::mistral_v3_tekken})
        CHECK(contains(refusal([&] { render_chat(f, two_users); }).value_or(""),
                       "After the optional system message, conversation roles must alternate"));
    CHECK(contains(refusal([] { render_chat(chat_format::mistral_legacy, std::vector<chat_message>{{"user", "a"}, {"tool", "b"}}); })
                       .value_or(""),
                   "Only user and assistant roles are supported!"));
    for (const auto& [format, name] : chat_format_names)
        CHECK(contains(refusal([f = format] { render_chat(f, std::span<const chat_message>{}); }).value_or(""), "no messages"));
    CHECK(!refusal([&] { render_chat(chat_format::chatml, two_users); }));
}

TEST_CASE("chat template helpers: Python's strip and json.dumps", "[tokenizer][chat]") {
    using detail::chat::json_string;
    using detail::chat::strip;
    CHECK(strip("  a b \t\n") == "a b");
    CHECK(strip("\xC2\xA0\xE2\x80\x83x\x1F\xE3\x80\x80") == "x");  // U+00A0, U+2003, U+001F, U+3000
    CHECK(strip("\xE2\x80\x8B" "x") == "\xE2\x80\x8B" "x");         // U+200B is not whitespace to Python
    CHECK(strip("x\xE2\x80") == "x\xE2\x80");                       // a cut character is kept
    CHECK(strip(" \xFF ") == "\xFF");
    CHECK(strip(" \t ").empty());
    CHECK(json_string("a\"b\\c\n\x01\xC3\xA9<") == "\"a\\\"b\\\\c\\n\\u0001\xC3\xA9<\"");
}

TEST_CASE("read_chat_messages: conversation files", "[tokenizer][chat][io]") {
    const auto m = parse_chat_messages(R"([{"role": "system", "content": "S"}, {"role": "user", "content": "Hi\nthere"}])", "c.json");
    REQUIRE(m.size() == 2);
    CHECK(m[1].role == "user");
    CHECK(m[1].content == "Hi\nthere");
    CHECK(parse_chat_messages(R"({"messages": [{"content": "x", "role": "user"}]})", "c.json").size() == 1);

    const auto error_of = [](const std::string& text) -> std::string {
        try {
            parse_chat_messages(text, "conv.json");
        } catch (const file_format_error& e) {
            CHECK(e.file() == "conv.json");
            return e.what();
        }
        return "(nothing thrown)";
    };
    CHECK(contains(error_of("[{\"role\": "), "not valid JSON"));
    CHECK(contains(error_of("\"hello\""), "expected a list"));
    CHECK(contains(error_of("{\"msgs\": []}"), "without \"messages\""));
    CHECK(contains(error_of("[]"), "holds no messages"));
    CHECK(contains(error_of(R"([{"role": "user", "content": "a"}, 3])"), "message 1: is 3"));
    CHECK(contains(error_of(R"([{"role": "user"}])"), "message 0: key 'content': is missing"));
    CHECK(contains(error_of(R"([{"role": "user", "content": null}])"), "message 0: key 'content': is null; expected a string"));
    CHECK(contains(error_of(R"([{"role": "", "content": "x"}])"), "message 0: key 'role': is empty"));
    CHECK(contains(error_of(R"([{"role": "assistant", "content": "x", "tool_calls": []}])"), "message 0: key 'tool_calls'"));

    kvtest::temp_dir dir;
    const auto path = dir.path / "conversation.json";
    std::ofstream(path) << R"([{"role": "user", "content": "What is 2+2?"}])";
    const auto from_file = read_chat_messages(path);
    REQUIRE(from_file.size() == 1);
    CHECK(render_chat(chat_format::chatml, from_file, {.default_system = "You are a helpful assistant."}) ==
          "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
          "<|im_start|>assistant\n");
    try {
        read_chat_messages(dir.path / "missing.json");
        FAIL("no error");
    } catch (const file_format_error& e) {
        CHECK(contains(e.what(), "missing.json"));
    }
}

TEST_CASE("render_chat on the byte-level fixture: its template, texts and ids", "[tokenizer][chat][hf]") {
    const auto folder = kvtest::shared_file("fixtures/hf/tokenizers/bytelevel");
    const auto golden_path = kvtest::shared_file("fixtures/hf/tokenizers/bytelevel/golden.json");
    if (!folder || !golden_path) return;
    const hf_tokenizer t = read_hf_tokenizer(*folder);
    REQUIRE(t.chat_template());
    const chat_format f = require_chat_format(*t.chat_template());
    CHECK(f == chat_format::chatml);
    chat_render_options o = chat_options_from_template(*t.chat_template());
    CHECK(o.default_system == "You are a helpful assistant.");
    o.eos_token = t.config().eos_token.value_or("");
    const json golden = json::parse(kvtest::read_text(*golden_path));
    REQUIRE(golden["chat"].size() == 6);
    for (const json& c : golden["chat"]) {
        o.add_generation_prompt = c["add_generation_prompt"];
        const std::string text = render_chat(f, messages_of(c["messages"]), o);
        CHECK(text == c["text"].get<std::string>());
        CHECK(t.encode(text, {.add_special = false}) == c["ids"].get<std::vector<token_id>>());
    }
}
