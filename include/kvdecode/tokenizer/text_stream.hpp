#pragma once
// Generated tokens as text, as it becomes final: whole UTF-8 characters only (a token
// that ends inside a character waits for the next), and, with stop strings, nothing
// that may still turn out to be the start of one. When a stop string is complete the
// stream stops: the text before it has been given out, the stop string and anything
// after it never are. Stop strings are matched on the text, so they are found across
// token boundaries and whichever tokens spell them.
//
//   text_stream stream(tok, {.stop = {"\n\nUser:"}});
//   options.on_token = [&](std::size_t, token_id t) {
//       std::fputs(stream.push(t).c_str(), stdout);
//       return !stream.stopped();           // the decoder ends the sequence here
//   };
//   ... generate ...
//   std::fputs(stream.finish().c_str(), stdout);
//
// Works with any tokenizer that has decode_token(previous, id, decode_options)
// (sentencepiece_tokenizer, hf_tokenizer, any_tokenizer). Tokens the tokenizer hides
// (special tokens, unless decode_options::special) add no text.

#include <algorithm>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kvdecode/core/types.hpp"
#include "kvdecode/tokenizer/options.hpp"
#include "kvdecode/tokenizer/utf8.hpp"

namespace kvdecode {

struct text_stream_options {
    std::vector<std::string> stop;  // stop strings (none empty); the earliest in the text wins
    decode_options decode;          // e.g. .special = true to show special tokens
    token_id previous = -1;         // the token before the first pushed one (the prompt's last), -1: none
};

template <class Tokenizer>
class text_stream {
public:
    explicit text_stream(const Tokenizer& tokenizer, text_stream_options options = {})
        : tokenizer_(&tokenizer), options_(std::move(options)), previous_(options_.previous) {
        for (const std::string& s : options_.stop)
            if (s.empty()) throw std::invalid_argument("kvdecode: text_stream: a stop string is empty");
    }

    // The text that token `id` makes final (possibly empty). After stopped(), nothing.
    std::string push(token_id id) {
        if (stopped_) return {};
        const std::string bytes = tokenizer_->decode_token(previous_, id, options_.decode);
        previous_ = id;
        held_ += utf8_.push(bytes);
        return release(false);
    }

    // Whatever is held back (an incomplete character, lossily; the start of a stop
    // string that never completed) once generation has ended.
    std::string finish() {
        if (stopped_) return {};
        held_ += utf8_.finish();
        return release(true);
    }

    // A stop string is complete: the decoder should end the sequence.
    bool stopped() const noexcept { return stopped_; }
    // Which one (index into options.stop), when stopped().
    std::size_t stop_index() const noexcept { return stop_index_; }

private:
    // Gives out what is final in held_: up to a complete stop string (then stops), or
    // all but the longest tail that is a prefix of a stop string.
    std::string release(bool at_end) {
        // held_ is what came since the last call and a tail shorter than the longest
        // stop string: searched whole.
        std::size_t first = std::string::npos;
        for (std::size_t i = 0; i < options_.stop.size(); ++i) {
            const std::size_t at = held_.find(options_.stop[i]);
            if (at < first) first = at, stop_index_ = i;
        }
        std::string out;
        if (first != std::string::npos) {
            stopped_ = true;
            out = held_.substr(0, first);
            held_.clear();
            return out;
        }
        std::size_t keep = 0;
        if (!at_end)
            for (const std::string& s : options_.stop)
                for (std::size_t n = std::min(s.size() - 1, held_.size()); n > keep; --n)
                    if (std::string_view(held_).substr(held_.size() - n) == std::string_view(s).substr(0, n)) {
                        keep = n;
                        break;
                    }
        out = held_.substr(0, held_.size() - keep);
        held_.erase(0, held_.size() - keep);
        return out;
    }

    const Tokenizer* tokenizer_;
    text_stream_options options_;
    token_id previous_;
    utf8_stream utf8_;
    std::string held_;  // final characters not given out yet (a possible stop-string start)
    bool stopped_ = false;
    std::size_t stop_index_ = 0;
};

}  // namespace kvdecode
