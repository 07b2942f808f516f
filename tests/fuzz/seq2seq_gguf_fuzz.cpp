// libFuzzer harness: encoder-decoder GGUF files (read_seq2seq_gguf) from arbitrary
// bytes. A bad file must end in kvdecode::model_format_error naming the input; anything
// else that escapes is a crash. On success the weights hold exactly the sizes the
// config gives, the vocabulary has one token per id, and BOS / EOS are inside it.

#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_support.hpp"
#include "kvdecode/io/seq2seq_gguf.hpp"

using namespace kvdecode;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string name = "fuzz input";
    try {
        const seq2seq_gguf m = read_seq2seq_gguf(gguf_file::from_memory(kvfuzz::bytes_of(data, size), name));
        const seq2seq_config& c = m.weights.config();
        const model_config& d = c.decoder;
        KVFUZZ_CHECK(c.vector_sources() != (c.source_vocab_size > 0));
        KVFUZZ_CHECK(m.weights.input_weight().size() == (c.vector_sources() ? d.dim * c.input_dim : 0));
        KVFUZZ_CHECK(m.weights.decoder().config().n_layers == d.n_layers);
        KVFUZZ_CHECK(m.weights.encoder().config().n_layers == c.encoder_layers);
        KVFUZZ_CHECK(m.weights.cross(d.n_layers - 1).wo.size() == d.dim * d.q_dim());
        KVFUZZ_CHECK(m.tokens.empty() || m.tokens.size() == d.vocab_size);
        for (const auto id : {m.ids.bos, m.ids.eos})
            KVFUZZ_CHECK(!id || (*id >= 0 && static_cast<std::size_t>(*id) < d.vocab_size));
    } catch (const model_format_error& e) {
        KVFUZZ_CHECK(e.file() == name);
        KVFUZZ_CHECK(!e.field().empty());
    }
    return 0;
}
