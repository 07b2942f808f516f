#pragma once
// What a caller asks of any tokenizer's encode() and decode(): the same options for
// the SentencePiece-style vocabularies (tokenizer/sentencepiece.hpp) and the
// Hugging Face tokenizer.json pipeline (tokenizer/hf_tokenizer.hpp), so one interface
// can wrap both.

namespace kvdecode {

struct encode_options {
    bool add_special = true;     // BOS and EOS where the vocabulary's add_bos / add_eos say
    bool parse_special = false;  // control and unknown token texts in the input become those tokens
};

struct decode_options {
    bool special = false;  // control and unknown tokens as their text (llama.cpp's token_to_piece special = true)
};

}  // namespace kvdecode
