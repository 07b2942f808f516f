#pragma once
// Reader for safetensors files (Hugging Face's weight format): an 8-byte little-endian
// header length N, N bytes of JSON, then the data buffer.
//   {"__metadata__": {"format": "pt", ...},          optional, string to string
//    "model.norm.weight": {"dtype": "BF16", "shape": [128], "data_offsets": [0, 256]}, ...}
// data_offsets are [begin, end) in bytes from the start of the data buffer.
//
// Nothing is trusted (the format's own rules, as its reference implementation checks
// them): N at most 100 MB and inside the file; the header a JSON object whose names are
// unique; every entry a known dtype, a shape of non-negative integers and two offsets;
// end - begin exactly the shape's element count times the dtype's size (overflow-
// checked); the entries, in offset order, tile the data buffer with no hole, overlap or
// byte left over. Anything else is a file_format_error naming the file and the tensor.
// The file is memory-mapped read-only and tensor bytes are never copied: a tensor's
// data is a span into the mapping, which owner() keeps alive. Data need not be aligned
// (the header length is any N): readers of a tensor must not assume alignment.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "kvdecode/core/checked_arithmetic.hpp"
#include "kvdecode/core/error.hpp"
#include "kvdecode/io/detail/mapped_file.hpp"

namespace kvdecode {

// The element types of the format (its Dtype enum), with their sizes in bytes.
enum class safetensors_dtype { boolean, u8, i8, f8_e5m2, f8_e4m3, i16, u16, f16, bf16, i32, u32, f32, f64, i64, u64 };

struct safetensors_dtype_info {
    safetensors_dtype dtype;
    std::string_view name;  // as the header spells it
    std::size_t bytes;
};

inline constexpr safetensors_dtype_info safetensors_dtypes[] = {
    {safetensors_dtype::boolean, "BOOL", 1}, {safetensors_dtype::u8, "U8", 1},
    {safetensors_dtype::i8, "I8", 1},        {safetensors_dtype::f8_e5m2, "F8_E5M2", 1},
    {safetensors_dtype::f8_e4m3, "F8_E4M3", 1}, {safetensors_dtype::i16, "I16", 2},
    {safetensors_dtype::u16, "U16", 2},      {safetensors_dtype::f16, "F16", 2},
    {safetensors_dtype::bf16, "BF16", 2},    {safetensors_dtype::i32, "I32", 4},
    {safetensors_dtype::u32, "U32", 4},      {safetensors_dtype::f32, "F32", 4},
    {safetensors_dtype::f64, "F64", 8},      {safetensors_dtype::i64, "I64", 8},
    {safetensors_dtype::u64, "U64", 8},
};

inline const safetensors_dtype_info& info(safetensors_dtype t) {
    for (const auto& d : safetensors_dtypes)
        if (d.dtype == t) return d;
    return safetensors_dtypes[0];  // unreachable: every enumerator is in the table
}
inline std::string_view to_string(safetensors_dtype t) { return info(t).name; }

struct safetensors_tensor {
    std::string name;
    safetensors_dtype dtype = safetensors_dtype::f32;
    std::vector<std::uint64_t> shape;  // outermost first (PyTorch order): a matrix is [rows, row_length]
    std::span<const std::byte> data;   // elements() * size of dtype bytes, unaligned in general

    std::uint64_t elements() const noexcept {
        std::uint64_t n = 1;
        for (std::uint64_t d : shape) n *= d;  // cannot overflow: checked when read
        return n;
    }
};

class safetensors_file {
public:
    // The format's limit on the header (its reference reader's MAX_HEADER_SIZE).
    static constexpr std::uint64_t max_header_bytes = 100'000'000;

    // Memory-maps the file (read-only) and reads its header.
    static safetensors_file open(const std::filesystem::path& path) {
        auto mapping = std::make_shared<const detail::mapped_file<file_format_error>>(path);
        safetensors_file f(mapping->bytes(), path.string());
        f.owner_ = std::move(mapping);
        return f;
    }

    // Reads a file held in memory, without copying: the caller keeps `bytes` alive as
    // long as this object and any tensor span. `name` stands for it in errors.
    static safetensors_file from_memory(std::span<const std::byte> bytes, std::string name = "<memory>") {
        return safetensors_file(bytes, std::move(name));
    }

    const std::string& name() const noexcept { return name_; }
    // Keeps the mapping alive (for weights that point into it); empty for from_memory.
    std::shared_ptr<const void> owner() const noexcept { return owner_; }
    std::uint64_t data_offset() const noexcept { return data_offset_; }  // 8 + N

    const std::vector<safetensors_tensor>& tensors() const noexcept { return tensors_; }  // in data order
    const std::map<std::string, std::string, std::less<>>& metadata() const noexcept { return metadata_; }

    const safetensors_tensor* find(std::string_view tensor_name) const {
        const auto it = index_.find(tensor_name);
        return it == index_.end() ? nullptr : &tensors_[it->second];
    }
    const safetensors_tensor& tensor(std::string_view tensor_name) const {
        if (const auto* t = find(tensor_name)) return *t;
        fail("tensor '" + std::string(tensor_name) + "'", "is missing");
    }

private:
    using json = nlohmann::json;

    safetensors_file(std::span<const std::byte> bytes, std::string name) : name_(std::move(name)) { read(bytes); }

    [[noreturn]] void fail(const std::string& field, const std::string& problem) const {
        throw file_format_error(name_, field, problem);
    }

    void read(std::span<const std::byte> bytes) {
        if (bytes.size() < 8)
            fail("header", "the file has " + std::to_string(bytes.size()) + " bytes, fewer than the 8 of the header length");
        std::uint64_t n = 0;
        for (int i = 7; i >= 0; --i) n = (n << 8) | std::to_integer<std::uint64_t>(bytes[static_cast<std::size_t>(i)]);
        if (n > max_header_bytes)
            fail("header", "claims " + std::to_string(n) + " bytes, more than the format's limit of " +
                               std::to_string(max_header_bytes));
        if (n > bytes.size() - 8)
            fail("header", "claims " + std::to_string(n) + " bytes, but the file has " + std::to_string(bytes.size() - 8) +
                               " after the length");
        data_offset_ = 8 + n;
        const auto* text = reinterpret_cast<const char*>(bytes.data() + 8);
        const json header = parse(std::string_view(text, static_cast<std::size_t>(n)));
        const std::span<const std::byte> data = bytes.subspan(static_cast<std::size_t>(data_offset_));

        struct extent {
            std::uint64_t begin, end;
            std::size_t index;
        };
        std::vector<extent> extents;
        for (const auto& [key, value] : header.items()) {
            if (key == "__metadata__") {
                read_metadata(value);
                continue;
            }
            const std::string field = "tensor '" + key + "'";
            if (!value.is_object()) fail(field, "is not a JSON object with dtype, shape and data_offsets");
            safetensors_tensor t;
            t.name = key;
            t.dtype = dtype_of(value, field);
            std::uint64_t elements = 1;
            for (const json& d : member(value, "shape", field, json::value_t::array)) {
                if (!d.is_number_unsigned()) fail(field, "has a shape entry " + d.dump() + "; expected a non-negative integer");
                const auto dim = d.get<std::uint64_t>();
                const auto next = checked_mul(elements, dim);
                if (!next) fail(field, "has a shape whose element count overflows 64 bits");
                elements = *next;
                t.shape.push_back(dim);
            }
            const json& offsets = member(value, "data_offsets", field, json::value_t::array);
            if (offsets.size() != 2 || !offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned())
                fail(field, "has data_offsets " + offsets.dump() + "; expected [begin, end], two non-negative integers");
            const auto begin = offsets[0].get<std::uint64_t>(), end = offsets[1].get<std::uint64_t>();
            if (begin > end) fail(field, "has data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + "] that end before they begin");
            const auto size = checked_mul(elements, info(t.dtype).bytes);
            if (!size) fail(field, "has a byte size that overflows 64 bits");
            if (end - begin != *size)
                fail(field, "has data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + "], " +
                                std::to_string(end - begin) + " bytes, but its shape and dtype " + std::string(to_string(t.dtype)) +
                                " take " + std::to_string(*size));
            if (end > data.size())
                fail(field, "ends at byte " + std::to_string(end) + " of the data, which has " + std::to_string(data.size()));
            t.data = data.subspan(static_cast<std::size_t>(begin), static_cast<std::size_t>(end - begin));
            extents.push_back({begin, end, tensors_.size()});
            tensors_.push_back(std::move(t));
        }

        // The tensors tile the data buffer: sorted by offset, each begins where the last ended.
        std::sort(extents.begin(), extents.end(),
                  [](const extent& a, const extent& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
        std::uint64_t covered = 0;
        for (const extent& e : extents) {
            if (e.begin != covered)
                fail("tensor '" + tensors_[e.index].name + "'",
                     "begins at byte " + std::to_string(e.begin) + " of the data, but the tensors before it end at " +
                         std::to_string(covered) + (e.begin < covered ? " (they overlap)" : " (a hole)"));
            covered = e.end;
        }
        if (covered != data.size())
            fail("data", "has " + std::to_string(data.size()) + " bytes, but the tensors take " + std::to_string(covered));

        // Data order, as the file stores them.
        std::vector<safetensors_tensor> ordered;
        ordered.reserve(tensors_.size());
        for (const extent& e : extents) ordered.push_back(std::move(tensors_[e.index]));
        tensors_ = std::move(ordered);
        for (std::size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
    }

    // The header as JSON; names repeated at the top level are an error (nlohmann would
    // keep the last one silently).
    json parse(std::string_view text) const {
        std::set<std::string, std::less<>> names;
        std::optional<std::string> repeated;
        const json::parser_callback_t check = [&](int depth, json::parse_event_t event, json& parsed) {
            if (depth == 1 && event == json::parse_event_t::key && parsed.is_string() && !repeated) {
                auto name = parsed.get<std::string>();
                if (!names.insert(name).second) repeated = std::move(name);
            }
            return true;
        };
        json header;
        try {
            header = json::parse(text.begin(), text.end(), check);
        } catch (const json::exception& e) {
            fail("header", std::string("is not valid JSON (") + e.what() + ")");
        }
        if (!header.is_object()) fail("header", "is JSON but not an object");
        if (repeated) fail("tensor '" + *repeated + "'", "appears twice in the header");
        return header;
    }

    const json& member(const json& object, const char* key, const std::string& field, json::value_t type) const {
        const auto it = object.find(key);
        if (it == object.end()) fail(field, std::string("has no ") + key);
        if (it->type() != type) fail(field, std::string("has ") + key + " " + it->dump() + " of the wrong JSON type");
        return *it;
    }

    safetensors_dtype dtype_of(const json& value, const std::string& field) const {
        const std::string name = member(value, "dtype", field, json::value_t::string).get<std::string>();
        for (const auto& d : safetensors_dtypes)
            if (d.name == name) return d.dtype;
        fail(field, "has dtype '" + name + "', which is not a safetensors dtype kvdecode knows");
    }

    void read_metadata(const json& value) {
        if (!value.is_object()) fail("__metadata__", "is not a JSON object of strings");
        for (const auto& [k, v] : value.items()) {
            if (!v.is_string()) fail("__metadata__", "has '" + k + "' = " + v.dump() + ", not a string");
            metadata_.emplace(k, v.get<std::string>());
        }
    }

    std::string name_;
    std::uint64_t data_offset_ = 0;
    std::vector<safetensors_tensor> tensors_;
    std::map<std::string, std::size_t, std::less<>> index_;
    std::map<std::string, std::string, std::less<>> metadata_;
    std::shared_ptr<const void> owner_;
};

}  // namespace kvdecode
