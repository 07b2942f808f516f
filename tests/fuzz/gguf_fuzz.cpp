// libFuzzer harness: the GGUF reader (gguf_file::from_memory) on arbitrary bytes.
// A bad input must end in kvdecode::gguf_error naming the input; anything else that
// escapes is a crash. On success every metadata value is read through every typed
// getter (a wrong type may only be a gguf_error) and every tensor's data span is
// read byte by byte (AddressSanitizer sees any span outside the input), the tensors'
// places are checked independently (aligned, inside the input, not overlapping), and
// the file goes through gguf_writer and back unchanged.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "kvdecode/io/gguf.hpp"
#include "kvdecode/io/gguf_writer.hpp"

using namespace kvdecode;

namespace {

const std::string input_name = "fuzz input";

std::optional<gguf_file> read(std::span<const std::byte> bytes) {
    try {
        return gguf_file::from_memory(bytes, input_name);
    } catch (const gguf_error& e) {
        KVFUZZ_CHECK(e.file() == input_name);
        KVFUZZ_CHECK(!e.field().empty());
        KVFUZZ_CHECK(std::string(e.what()).rfind("kvdecode: " + input_name + ": ", 0) == 0);
        return std::nullopt;
    }
}

// Calls `get` and accepts a gguf_error that names the key (the value is of another type).
template <class F>
void try_get(const gguf_file& f, const std::string& key, F get) {
    try {
        get();
    } catch (const gguf_error& e) {
        KVFUZZ_CHECK(e.field() == "key '" + key + "'");
        KVFUZZ_CHECK(e.file() == f.name());
    }
}

// Every getter on every key; what succeeds must agree with the stored value.
void touch_metadata(const gguf_file& f) {
    for (const auto& kv : f.metadata()) {
        const std::string& key = kv.key;
        KVFUZZ_CHECK(!key.empty());
        KVFUZZ_CHECK(f.find(key) == &kv.value);  // keys are unique
        (void)describe(kv.value);
        const auto type = type_of(kv.value);
        try_get(f, key, [&] {
            const auto u = f.uint(key);
            KVFUZZ_CHECK(f.find_uint(key) == u);
            const auto i = f.find_int(key);
            (void)i;
        });
        try_get(f, key, [&] { (void)f.int_(key); });
        try_get(f, key, [&] {
            const double r = f.real(key);
            KVFUZZ_CHECK(type == gguf_value_type::f32 || type == gguf_value_type::f64);
            (void)r;
        });
        try_get(f, key, [&] { KVFUZZ_CHECK(f.boolean(key) == std::get<bool>(kv.value)); });
        try_get(f, key, [&] { KVFUZZ_CHECK(f.string(key) == std::get<std::string>(kv.value)); });
        if (const auto* a = std::get_if<gguf_array>(&kv.value)) {
            KVFUZZ_CHECK(&f.array(key) == a);
            if (a->type() == gguf_value_type::string) {
                KVFUZZ_CHECK(a->strings().size() == a->size());
                std::size_t total = 0;
                for (const auto& s : a->strings()) total += s.size();
                KVFUZZ_CHECK(total <= f.size());
            } else {
                KVFUZZ_CHECK(a->bytes().size() == a->size() * gguf_value_size(a->type()));
                for (std::size_t i = 0; i < a->size(); ++i) (void)a->visit_number(i, [](auto x) { return describe(gguf_value(x)); });
            }
            try_get(f, key, [&] { KVFUZZ_CHECK(f.strings(key).size() == a->size()); });
            try_get(f, key, [&] { KVFUZZ_CHECK(f.floats(key).size() == a->size()); });
            try_get(f, key, [&] { KVFUZZ_CHECK(f.ints(key).size() == a->size()); });
        }
    }
}

// The tensors' places, checked without the reader's own arithmetic; every byte read.
unsigned touch_tensors(const gguf_file& f, std::span<const std::byte> bytes) {
    const std::uint64_t align = f.alignment();
    KVFUZZ_CHECK(align > 0 && (align & (align - 1)) == 0);
    KVFUZZ_CHECK(f.data_offset() <= bytes.size());
    if (!f.tensors().empty()) KVFUZZ_CHECK(f.data_offset() % align == 0);
    unsigned sum = 0;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> spans;
    for (const auto& t : f.tensors()) {
        KVFUZZ_CHECK(f.find_tensor(t.name) == &t);
        KVFUZZ_CHECK(!t.shape.empty() && t.shape.size() <= 4);
        const auto& tt = traits(t.type);
        KVFUZZ_CHECK(t.shape[0] % tt.block_values == 0);
        unsigned __int128 elements = 1;
        for (auto d : t.shape) {
            KVFUZZ_CHECK(d > 0);
            elements *= d;
        }
        KVFUZZ_CHECK(elements == t.elements());
        KVFUZZ_CHECK(elements / tt.block_values * tt.block_bytes == t.bytes);
        KVFUZZ_CHECK(t.offset % align == 0);
        KVFUZZ_CHECK(static_cast<unsigned __int128>(f.data_offset()) + t.offset + t.bytes <= bytes.size());
        const auto d = f.data(t);
        KVFUZZ_CHECK(d.data() == bytes.data() + f.data_offset() + t.offset && d.size() == t.bytes);
        for (std::byte b : d) sum += std::to_integer<unsigned>(b);
        spans.push_back({t.offset, t.offset + t.bytes});
    }
    std::sort(spans.begin(), spans.end());
    for (std::size_t i = 1; i < spans.size(); ++i) KVFUZZ_CHECK(spans[i - 1].second <= spans[i].first);
    return sum;
}

// Through gguf_writer and back: the same metadata, tensors and data; writing the copy
// again gives the same bytes.
void round_trip(const gguf_file& f) {
    gguf_writer w;
    w.copy_metadata(f);
    for (const auto& t : f.tensors()) {
        if (t.name.size() > gguf_writer::max_name_bytes) return;  // readable, but more than ggml (and the writer) allow
        w.add_tensor(t.name, t.shape, t.type, f.data(t), {});
    }
    const auto out = w.to_bytes();
    const auto g = gguf_file::from_memory(out, "round trip");
    KVFUZZ_CHECK(g.version() == 3 && g.alignment() == f.alignment());
    KVFUZZ_CHECK(g.metadata().size() == f.metadata().size());
    for (std::size_t i = 0; i < g.metadata().size(); ++i) {
        KVFUZZ_CHECK(g.metadata()[i].key == f.metadata()[i].key);
        KVFUZZ_CHECK(type_of(g.metadata()[i].value) == type_of(f.metadata()[i].value));
        KVFUZZ_CHECK(describe(g.metadata()[i].value, 1u << 20, 1u << 20) == describe(f.metadata()[i].value, 1u << 20, 1u << 20));
    }
    KVFUZZ_CHECK(g.tensors().size() == f.tensors().size());
    for (std::size_t i = 0; i < g.tensors().size(); ++i) {
        const auto &a = f.tensors()[i], &b = g.tensors()[i];
        KVFUZZ_CHECK(a.name == b.name && a.shape == b.shape && a.type == b.type && a.bytes == b.bytes);
        const auto da = f.data(a), db = g.data(b);
        KVFUZZ_CHECK(std::equal(da.begin(), da.end(), db.begin(), db.end()));
    }
    gguf_writer again;
    again.copy_metadata(g);
    for (const auto& t : g.tensors()) again.add_tensor(t.name, t.shape, t.type, g.data(t), {});
    KVFUZZ_CHECK(again.to_bytes() == out);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto bytes = kvfuzz::bytes_of(data, size);
    const auto f = read(bytes);
    if (!f) return 0;
    KVFUZZ_CHECK(size >= 24 && std::memcmp(data, "GGUF", 4) == 0);
    KVFUZZ_CHECK(f->version() == 2 || f->version() == 3);
    KVFUZZ_CHECK(f->size() == size && f->owner() == nullptr);
    touch_metadata(*f);
    volatile unsigned sink = touch_tensors(*f, bytes);
    (void)sink;
    (void)describe(*f);
    round_trip(*f);
    return 0;
}
