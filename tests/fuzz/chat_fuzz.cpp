// libFuzzer harness: chat templates and conversation files. The input is read twice:
// as a conversation file (parse_chat_messages), where a bad one must end in
// kvdecode::file_format_error naming the input, and a good one renders in every
// family (std::invalid_argument only for what the family's template refuses); and as
// a Jinja template (recognize_chat_template, chatml_default_system,
// chat_options_from_template), which never throws.

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_support.hpp"
#include "kvdecode/io/chat_messages.hpp"
#include "kvdecode/tokenizer/chat_template.hpp"

using namespace kvdecode;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);

    const auto f = recognize_chat_template(text);
    const chat_render_options from_template = chat_options_from_template(text);
    KVFUZZ_CHECK(from_template.default_system == chatml_default_system(text));
    if (f) KVFUZZ_CHECK(require_chat_format(text) == *f);

    std::vector<chat_message> messages;
    try {
        messages = parse_chat_messages(text, "fuzz input");
    } catch (const file_format_error& e) {
        KVFUZZ_CHECK(e.file() == "fuzz input");
        return 0;
    }
    KVFUZZ_CHECK(!messages.empty());
    for (const auto& [format, name] : chat_format_names) {
        chat_render_options o{.bos_token = "<s>", .eos_token = "</s>", .default_system = "S"};
        for (const bool prompt : {false, true}) {
            o.add_generation_prompt = prompt;
            try {
                const std::string out = render_chat(format, messages, o);
                if (format == chat_format::chatml || format == chat_format::zephyr) {
                    // Contents are written unchanged, in order.
                    std::size_t at = 0;
                    for (const chat_message& m : messages) {
                        if (format == chat_format::zephyr && m.role != "user" && m.role != "system" && m.role != "assistant")
                            continue;
                        at = out.find(m.content, at);
                        KVFUZZ_CHECK(at != std::string::npos);
                        at += m.content.size();
                    }
                }
            } catch (const std::invalid_argument&) {
                KVFUZZ_CHECK(format != chat_format::chatml && format != chat_format::llama3 &&
                             format != chat_format::llama3_1 && format != chat_format::zephyr);
            }
        }
    }
    return 0;
}
