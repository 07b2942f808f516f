#pragma once
// Reader for GGUF files (versions 2 and 3, little-endian), the format of ggml and
// llama.cpp: a header, typed key-value metadata, tensor infos, then the tensor data,
// aligned. The file is memory-mapped read-only and tensor data is never copied: a
// tensor's bytes are a span into the mapping, which owner() keeps alive.
//
// Nothing the file claims is trusted: every count, length and offset is checked
// against the bytes that are left before anything is sized or read from it, element
// counts and byte sizes are overflow-checked, and every tensor's data must lie inside
// the file. A bad file throws gguf_error (a model_format_error) naming the file, the
// key or tensor, and what is wrong. (A mapped file that another program truncates
// while it is open can still fault on access, as with any mmap.)
//
// Layout (all integers little-endian):
//   "GGUF", uint32 version, uint64 tensor count, uint64 key-value count,
//   key-value pairs: string key, uint32 value type, value
//     (string: uint64 length + bytes; array: uint32 element type, uint64 count, elements),
//   tensor infos: string name, uint32 n_dims, uint64 dims[n_dims] (ggml order: dims[0]
//     is the row length), uint32 ggml type, uint64 offset from the data start,
//   zero padding to general.alignment (default 32), the data section.

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>


#include "kvdecode/core/checked_arithmetic.hpp"
#include "kvdecode/core/error.hpp"
#include "kvdecode/io/detail/mapped_file.hpp"

namespace kvdecode {

// A GGUF file that cannot be read, or a metadata value or tensor that is missing or of
// another type than asked for. what() is "kvdecode: FILE: FIELD: problem"; field() is
// the key or tensor ("key 'llama.block_count'", "tensor 'output.weight'", "header").
class gguf_error : public model_format_error {
public:
    gguf_error(const std::string& file, const std::string& field, const std::string& problem)
        : model_format_error(whole_message{}, file, field, "kvdecode: " + file + ": " + field + ": " + problem) {}
};

// ---------------------------------------------------------------------------------
// Tensor types: ggml's type ids. Ids 4, 5 (Q4_2, Q4_3), 31-33 (Q4_0_4_4, Q4_0_4_8,
// Q4_0_8_8) and 36-38 (IQ4_NL_4_4, ...) were removed from ggml and GGUF files; a file
// using them is rejected. Ids after TQ2_0 were added by ggml after the commit that
// made the fixtures (c5d91a7).
enum class gguf_type : std::uint32_t {
    f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9,
    q2_k = 10, q3_k = 11, q4_k = 12, q5_k = 13, q6_k = 14, q8_k = 15,
    iq2_xxs = 16, iq2_xs = 17, iq3_xxs = 18, iq1_s = 19, iq4_nl = 20, iq3_s = 21, iq2_s = 22, iq4_xs = 23,
    i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, iq1_m = 29, bf16 = 30,
    tq1_0 = 34, tq2_0 = 35, mxfp4 = 39, nvfp4 = 40, q1_0 = 41,
};

// What the size of a tensor of a type depends on: values are stored in blocks of
// `block_values` values taking `block_bytes` bytes (1 and the element size for the
// plain types). A row (dims[0] values) is always a whole number of blocks.
struct gguf_type_traits {
    gguf_type type;
    std::string_view name;  // as llama.cpp's tools print it: "Q4_K", "BF16"
    std::uint32_t block_values;
    std::uint32_t block_bytes;
};

namespace detail {

inline constexpr std::array<gguf_type_traits, 34> gguf_types = {{
    {gguf_type::f32, "F32", 1, 4},          {gguf_type::f16, "F16", 1, 2},
    {gguf_type::q4_0, "Q4_0", 32, 18},      {gguf_type::q4_1, "Q4_1", 32, 20},
    {gguf_type::q5_0, "Q5_0", 32, 22},      {gguf_type::q5_1, "Q5_1", 32, 24},
    {gguf_type::q8_0, "Q8_0", 32, 34},      {gguf_type::q8_1, "Q8_1", 32, 36},
    {gguf_type::q2_k, "Q2_K", 256, 84},     {gguf_type::q3_k, "Q3_K", 256, 110},
    {gguf_type::q4_k, "Q4_K", 256, 144},    {gguf_type::q5_k, "Q5_K", 256, 176},
    {gguf_type::q6_k, "Q6_K", 256, 210},    {gguf_type::q8_k, "Q8_K", 256, 292},
    {gguf_type::iq2_xxs, "IQ2_XXS", 256, 66}, {gguf_type::iq2_xs, "IQ2_XS", 256, 74},
    {gguf_type::iq3_xxs, "IQ3_XXS", 256, 98}, {gguf_type::iq1_s, "IQ1_S", 256, 50},
    {gguf_type::iq4_nl, "IQ4_NL", 32, 18},  {gguf_type::iq3_s, "IQ3_S", 256, 110},
    {gguf_type::iq2_s, "IQ2_S", 256, 82},   {gguf_type::iq4_xs, "IQ4_XS", 256, 136},
    {gguf_type::i8, "I8", 1, 1},            {gguf_type::i16, "I16", 1, 2},
    {gguf_type::i32, "I32", 1, 4},          {gguf_type::i64, "I64", 1, 8},
    {gguf_type::f64, "F64", 1, 8},          {gguf_type::iq1_m, "IQ1_M", 256, 56},
    {gguf_type::bf16, "BF16", 1, 2},        {gguf_type::tq1_0, "TQ1_0", 256, 54},
    {gguf_type::tq2_0, "TQ2_0", 256, 66},   {gguf_type::mxfp4, "MXFP4", 32, 17},
    {gguf_type::nvfp4, "NVFP4", 64, 36},    {gguf_type::q1_0, "Q1_0", 128, 18},
}};

// Ids ggml used once and removed; files holding them no longer load anywhere.
inline std::string_view removed_gguf_type_name(std::uint32_t id) noexcept {
    switch (id) {
        case 4: return "Q4_2";
        case 5: return "Q4_3";
        case 31: return "Q4_0_4_4";
        case 32: return "Q4_0_4_8";
        case 33: return "Q4_0_8_8";
        case 36: return "IQ4_NL_4_4";
        case 37: return "IQ4_NL_4_8";
        case 38: return "IQ4_NL_8_8";
        default: return {};
    }
}

}  // namespace detail

// The traits of a type id, or nullptr for an id ggml does not define (or removed).
inline const gguf_type_traits* find_gguf_type(std::uint32_t id) noexcept {
    for (const auto& t : detail::gguf_types)
        if (static_cast<std::uint32_t>(t.type) == id) return &t;
    return nullptr;
}

inline const gguf_type_traits& traits(gguf_type type) {
    if (const auto* t = find_gguf_type(static_cast<std::uint32_t>(type))) return *t;
    throw std::invalid_argument("kvdecode: gguf_type " + std::to_string(static_cast<std::uint32_t>(type)) +
                                " is not a ggml type");
}

inline std::string_view to_string(gguf_type type) {
    const auto* t = find_gguf_type(static_cast<std::uint32_t>(type));
    return t ? t->name : std::string_view("(not a ggml type)");
}

namespace detail {

// Elements and bytes of a tensor of this type and shape, or the reason there are none
// (a zero or too large dimension, a row that is not whole blocks, overflow).
struct gguf_tensor_size {
    std::uint64_t elements = 0;
    std::uint64_t bytes = 0;
    std::string problem;  // empty when the shape is valid
};

inline gguf_tensor_size tensor_size(const gguf_type_traits& t, std::span<const std::uint64_t> shape) {
    gguf_tensor_size out;
    if (shape.empty() || shape.size() > 4) {
        out.problem = "has " + std::to_string(shape.size()) + " dimensions; expected 1 to 4";
        return out;
    }
    constexpr std::uint64_t max_elements = std::numeric_limits<std::int64_t>::max();  // ggml counts in int64
    std::uint64_t elements = 1;
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (shape[i] == 0) {
            out.problem = "dimension " + std::to_string(i) + " is 0";
            return out;
        }
        const auto product = checked_mul(elements, shape[i]);
        if (!product || *product > max_elements) {
            out.problem = "has more than 2^63 - 1 elements (dimension " + std::to_string(i) + " is " +
                          std::to_string(shape[i]) + ")";
            return out;
        }
        elements = *product;
    }
    if (shape[0] % t.block_values != 0) {
        out.problem = "row length " + std::to_string(shape[0]) + " is not a multiple of " + std::string(t.name) +
                      "'s block of " + std::to_string(t.block_values) + " values";
        return out;
    }
    const auto bytes = checked_mul(elements / t.block_values, t.block_bytes);
    if (!bytes || *bytes > max_elements) {
        out.problem = "takes more than 2^63 - 1 bytes";
        return out;
    }
    out.elements = elements;
    out.bytes = *bytes;
    return out;
}

inline std::string shape_string(std::span<const std::uint64_t> shape) {
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

}  // namespace detail

// The byte size of a tensor of this type and shape (ggml order); throws
// std::invalid_argument when there is none (see detail::tensor_size).
inline std::uint64_t gguf_tensor_bytes(gguf_type type, std::span<const std::uint64_t> shape) {
    const auto size = detail::tensor_size(traits(type), shape);
    if (!size.problem.empty())
        throw std::invalid_argument("kvdecode: a " + std::string(to_string(type)) + " tensor of shape " +
                                    detail::shape_string(shape) + " " + size.problem);
    return size.bytes;
}

// ---------------------------------------------------------------------------------
// Metadata values. The ids are GGUF's value types.
enum class gguf_value_type : std::uint32_t {
    u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7, string = 8, array = 9,
    u64 = 10, i64 = 11, f64 = 12,
};

inline std::string_view to_string(gguf_value_type t) {
    static constexpr std::array<std::string_view, 13> names = {"uint8", "int8",   "uint16", "int16", "uint32",
                                                               "int32", "float32", "bool",  "string", "array",
                                                               "uint64", "int64", "float64"};
    const auto i = static_cast<std::uint32_t>(t);
    return i < names.size() ? names[i] : std::string_view("(not a GGUF value type)");
}

// The C++ type of each scalar value type, and back.
template <gguf_value_type> struct gguf_cpp_type;
template <> struct gguf_cpp_type<gguf_value_type::u8> { using type = std::uint8_t; };
template <> struct gguf_cpp_type<gguf_value_type::i8> { using type = std::int8_t; };
template <> struct gguf_cpp_type<gguf_value_type::u16> { using type = std::uint16_t; };
template <> struct gguf_cpp_type<gguf_value_type::i16> { using type = std::int16_t; };
template <> struct gguf_cpp_type<gguf_value_type::u32> { using type = std::uint32_t; };
template <> struct gguf_cpp_type<gguf_value_type::i32> { using type = std::int32_t; };
template <> struct gguf_cpp_type<gguf_value_type::f32> { using type = float; };
template <> struct gguf_cpp_type<gguf_value_type::boolean> { using type = bool; };
template <> struct gguf_cpp_type<gguf_value_type::u64> { using type = std::uint64_t; };
template <> struct gguf_cpp_type<gguf_value_type::i64> { using type = std::int64_t; };
template <> struct gguf_cpp_type<gguf_value_type::f64> { using type = double; };

template <class T>
constexpr gguf_value_type gguf_value_type_of() {
    if constexpr (std::is_same_v<T, std::uint8_t>) return gguf_value_type::u8;
    else if constexpr (std::is_same_v<T, std::int8_t>) return gguf_value_type::i8;
    else if constexpr (std::is_same_v<T, std::uint16_t>) return gguf_value_type::u16;
    else if constexpr (std::is_same_v<T, std::int16_t>) return gguf_value_type::i16;
    else if constexpr (std::is_same_v<T, std::uint32_t>) return gguf_value_type::u32;
    else if constexpr (std::is_same_v<T, std::int32_t>) return gguf_value_type::i32;
    else if constexpr (std::is_same_v<T, float>) return gguf_value_type::f32;
    else if constexpr (std::is_same_v<T, bool>) return gguf_value_type::boolean;
    else if constexpr (std::is_same_v<T, std::string>) return gguf_value_type::string;
    else if constexpr (std::is_same_v<T, std::uint64_t>) return gguf_value_type::u64;
    else if constexpr (std::is_same_v<T, std::int64_t>) return gguf_value_type::i64;
    else if constexpr (std::is_same_v<T, double>) return gguf_value_type::f64;
    else static_assert(sizeof(T) == 0, "not a GGUF value type");
}

// Bytes of one element of a scalar value type (0 for string and array).
inline std::size_t gguf_value_size(gguf_value_type t) noexcept {
    switch (t) {
        case gguf_value_type::u8: case gguf_value_type::i8: case gguf_value_type::boolean: return 1;
        case gguf_value_type::u16: case gguf_value_type::i16: return 2;
        case gguf_value_type::u32: case gguf_value_type::i32: case gguf_value_type::f32: return 4;
        case gguf_value_type::u64: case gguf_value_type::i64: case gguf_value_type::f64: return 8;
        default: return 0;
    }
}

// An array value: numbers (and bools, as bytes 0/1) kept as the file's little-endian
// bytes, so a vocabulary's scores take 4 bytes each; strings as strings. Arrays of
// arrays are not supported (no model format uses them).
class gguf_array {
public:
    gguf_array() = default;  // an empty array of uint8

    template <class T>
        requires(!std::is_same_v<T, std::string> && !std::is_same_v<T, bool>)
    explicit gguf_array(const std::vector<T>& values) : type_(gguf_value_type_of<T>()), count_(values.size()) {
        raw_.resize(values.size() * sizeof(T));
        if (!values.empty()) std::memcpy(raw_.data(), values.data(), raw_.size());
    }
    explicit gguf_array(const std::vector<bool>& values) : type_(gguf_value_type::boolean), count_(values.size()) {
        for (bool b : values) raw_.push_back(std::byte{b ? std::uint8_t{1} : std::uint8_t{0}});
    }
    explicit gguf_array(std::vector<std::string> values)
        : type_(gguf_value_type::string), count_(values.size()), strings_(std::move(values)) {}

    // `count` elements of a scalar type from `raw` (count * size bytes; bools 0 or 1).
    static gguf_array from_bytes(gguf_value_type type, std::span<const std::byte> raw) {
        const std::size_t size = gguf_value_size(type);
        if (size == 0 || raw.size() % size != 0)
            throw std::invalid_argument("kvdecode: gguf_array::from_bytes: " + std::to_string(raw.size()) +
                                        " bytes are not whole " + std::string(to_string(type)) + " values");
        gguf_array a;
        a.type_ = type;
        a.count_ = raw.size() / size;
        a.raw_.assign(raw.begin(), raw.end());
        return a;
    }

    gguf_value_type type() const noexcept { return type_; }  // of the elements
    std::size_t size() const noexcept { return count_; }
    bool empty() const noexcept { return count_ == 0; }
    std::span<const std::byte> bytes() const noexcept { return raw_; }  // empty for strings
    const std::vector<std::string>& strings() const noexcept { return strings_; }  // empty unless strings

    // Element i as its own C++ type T (T must match type(); i < size()).
    template <class T>
    T at(std::size_t i) const {
        if (gguf_value_type_of<T>() != type_ || i >= count_)
            throw std::invalid_argument("kvdecode: gguf_array::at: element " + std::to_string(i) + " as " +
                                        std::string(to_string(gguf_value_type_of<T>())) + " of an array of " +
                                        std::to_string(count_) + " " + std::string(to_string(type_)));
        if constexpr (std::is_same_v<T, std::string>) {
            return strings_[i];
        } else if constexpr (std::is_same_v<T, bool>) {
            return raw_[i] != std::byte{0};
        } else {
            T v;
            std::memcpy(&v, raw_.data() + i * sizeof(T), sizeof(T));
            return v;
        }
    }

    // Calls f(element i as its own C++ type) for a numeric or bool array.
    template <class F>
    decltype(auto) visit_number(std::size_t i, F&& f) const {
        switch (type_) {
            case gguf_value_type::u8: return f(at<std::uint8_t>(i));
            case gguf_value_type::i8: return f(at<std::int8_t>(i));
            case gguf_value_type::u16: return f(at<std::uint16_t>(i));
            case gguf_value_type::i16: return f(at<std::int16_t>(i));
            case gguf_value_type::u32: return f(at<std::uint32_t>(i));
            case gguf_value_type::i32: return f(at<std::int32_t>(i));
            case gguf_value_type::f32: return f(at<float>(i));
            case gguf_value_type::boolean: return f(at<bool>(i));
            case gguf_value_type::u64: return f(at<std::uint64_t>(i));
            case gguf_value_type::i64: return f(at<std::int64_t>(i));
            case gguf_value_type::f64: return f(at<double>(i));
            default: throw std::invalid_argument("kvdecode: gguf_array::visit_number on an array of strings");
        }
    }

    // Equal types and elements; numbers compare by their bytes (a NaN equals itself).
    friend bool operator==(const gguf_array&, const gguf_array&) = default;

private:
    gguf_value_type type_ = gguf_value_type::u8;
    std::uint64_t count_ = 0;
    std::vector<std::byte> raw_;
    std::vector<std::string> strings_;
};

// A metadata value; index() is its GGUF value type id (gguf_value_type).
using gguf_value = std::variant<std::uint8_t, std::int8_t, std::uint16_t, std::int16_t, std::uint32_t, std::int32_t,
                                float, bool, std::string, gguf_array, std::uint64_t, std::int64_t, double>;

inline gguf_value_type type_of(const gguf_value& v) noexcept { return static_cast<gguf_value_type>(v.index()); }

// One metadata entry, in file order.
struct gguf_kv {
    std::string key;
    gguf_value value;
};

// The value as text for messages and listings: strings quoted and cut after
// `max_chars`, arrays as "[N x type: first max_items ...]".
inline std::string describe(const gguf_value& v, std::size_t max_items = 8, std::size_t max_chars = 60) {
    auto quoted = [&](const std::string& s) {
        std::string out = "'";
        for (std::size_t i = 0; i < s.size() && i < max_chars; ++i) {
            const auto c = static_cast<unsigned char>(s[i]);
            if (c == '\n') out += "\\n";
            else if (c < 0x20 || c == 0x7f) {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\x%02x", c);
                out += buf;
            } else out += static_cast<char>(c);
        }
        return out + (s.size() > max_chars ? "'..." : "'");
    };
    auto number = [](auto x) -> std::string {
        using X = decltype(x);
        if constexpr (std::is_same_v<X, bool>) return x ? "true" : "false";
        else if constexpr (std::is_floating_point_v<X>) {
            std::ostringstream s;
            s.precision(std::numeric_limits<X>::max_digits10);
            s << x;
            return s.str();
        } else return std::to_string(x);
    };
    return std::visit(
        [&](const auto& x) -> std::string {
            using X = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<X, std::string>) {
                return quoted(x);
            } else if constexpr (std::is_same_v<X, gguf_array>) {
                std::string out = "[" + std::to_string(x.size()) + " x " + std::string(to_string(x.type()));
                for (std::size_t i = 0; i < x.size() && i < max_items; ++i) {
                    out += i ? ", " : ": ";
                    out += x.type() == gguf_value_type::string ? quoted(x.strings()[i]) : x.visit_number(i, number);
                }
                return out + (x.size() > max_items ? ", ...]" : "]");
            } else {
                return number(x);
            }
        },
        v);
}

// ---------------------------------------------------------------------------------
// A tensor as the file describes it.
struct gguf_tensor_info {
    std::string name;
    std::vector<std::uint64_t> shape;  // ggml order: shape[0] is the row length (contiguous values)
    gguf_type type = gguf_type::f32;
    std::uint64_t offset = 0;          // of its data, from the start of the data section
    std::uint64_t bytes = 0;           // of its data

    std::uint64_t row_length() const noexcept { return shape.empty() ? 0 : shape[0]; }
    // Rows: the product of every dimension but the first (1 for a vector).
    std::uint64_t rows() const noexcept {
        std::uint64_t r = 1;
        for (std::size_t i = 1; i < shape.size(); ++i) r *= shape[i];  // cannot overflow: checked when read
        return r;
    }
    std::uint64_t elements() const noexcept { return row_length() * rows(); }
};

namespace detail {

// Reads little-endian values from the file's bytes, checking each length against
// what is left first; failures name the file and the field being read.
class gguf_cursor {
public:
    gguf_cursor(std::span<const std::byte> bytes, const std::string& file) : bytes_(bytes), file_(file) {}

    std::uint64_t position() const noexcept { return position_; }
    std::uint64_t remaining() const noexcept { return bytes_.size() - position_; }

    [[noreturn]] void fail(const std::string& field, const std::string& problem) const {
        throw gguf_error(file_, field, problem);
    }

    // Fails unless `n` more bytes remain (`what` says what they would hold).
    void need(std::uint64_t n, const std::string& field, const std::string& what) const {
        if (n > remaining())
            fail(field, what + " at offset " + std::to_string(position_) + " runs past the end of the file (" +
                            std::to_string(bytes_.size()) + " bytes)");
    }

    template <class T>
    T read(const std::string& field, const char* what) {
        static_assert(std::is_trivially_copyable_v<T>);
        need(sizeof(T), field, std::string(what) + " (" + std::to_string(sizeof(T)) + " bytes)");
        T v;
        std::memcpy(&v, bytes_.data() + position_, sizeof(T));  // the format is little-endian, as are our targets
        position_ += sizeof(T);
        return v;
    }

    std::span<const std::byte> take(std::uint64_t n, const std::string& field, const std::string& what) {
        need(n, field, what);
        const auto out = bytes_.subspan(position_, n);
        position_ += n;
        return out;
    }

    // A uint64 length, then that many bytes: allocated only once the file holds them.
    std::string read_string(const std::string& field, const char* what) {
        const auto length = read<std::uint64_t>(field, what);
        const auto b = take(length, field, std::string(what) + " of " + std::to_string(length) + " bytes");
        return std::string(reinterpret_cast<const char*>(b.data()), b.size());
    }

private:
    std::span<const std::byte> bytes_;
    const std::string& file_;
    std::uint64_t position_ = 0;
};

// An integer of any width as sign and magnitude, for range checks between widths.
struct gguf_integer {
    bool negative = false;
    std::uint64_t magnitude = 0;
};

template <class T>
std::optional<gguf_integer> as_integer(const T& v) {
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
        if constexpr (std::is_signed_v<T>) {
            if (v < 0) return gguf_integer{true, std::uint64_t{0} - static_cast<std::uint64_t>(static_cast<std::int64_t>(v))};
        }
        return gguf_integer{false, static_cast<std::uint64_t>(v)};
    } else {
        return std::nullopt;
    }
}

inline std::optional<std::int64_t> to_int64(gguf_integer i) {
    constexpr auto max = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    if (!i.negative) return i.magnitude <= max ? std::optional<std::int64_t>(static_cast<std::int64_t>(i.magnitude)) : std::nullopt;
    if (i.magnitude > max + 1) return std::nullopt;
    return static_cast<std::int64_t>(std::uint64_t{0} - i.magnitude);  // modular conversion (C++20)
}

}  // namespace detail

// ---------------------------------------------------------------------------------
// An open GGUF file: its metadata and tensor infos, read and checked, and its bytes
// (memory-mapped by open(), or the caller's for from_memory()). Immutable; copies
// share the mapping.
class gguf_file {
public:
    static constexpr std::uint64_t default_alignment = 32;

    // Memory-maps the file (read-only) and reads everything but the tensor data.
    static gguf_file open(const std::filesystem::path& path) {
        auto mapping = std::make_shared<const detail::mapped_file<gguf_error>>(path);
        gguf_file f(mapping->bytes(), path.string());
        f.owner_ = std::move(mapping);
        return f;
    }

    // Reads a file held in memory, without copying it: the caller keeps `bytes` alive
    // as long as this object and any span of its data. `name` stands for it in errors.
    static gguf_file from_memory(std::span<const std::byte> bytes, std::string name = "<memory>") {
        return gguf_file(bytes, std::move(name));
    }

    std::uint32_t version() const noexcept { return version_; }
    const std::string& name() const noexcept { return name_; }
    std::uint64_t alignment() const noexcept { return alignment_; }
    std::uint64_t data_offset() const noexcept { return data_offset_; }  // where the data section starts
    std::uint64_t size() const noexcept { return bytes_.size(); }
    std::span<const std::byte> bytes() const noexcept { return bytes_; }  // the whole file
    // Keeps the mapping alive (for weights that point into it); empty for from_memory.
    std::shared_ptr<const void> owner() const noexcept { return owner_; }

    // --- metadata -------------------------------------------------------------------
    const std::vector<gguf_kv>& metadata() const noexcept { return metadata_; }  // in file order
    bool has(std::string_view key) const { return find(key) != nullptr; }
    const gguf_value* find(std::string_view key) const {
        const auto it = key_index_.find(key);
        return it == key_index_.end() ? nullptr : &metadata_[it->second].value;
    }
    const gguf_value& value(std::string_view key) const {
        if (const auto* v = find(key)) return *v;
        throw gguf_error(name_, key_field(key), "is missing");
    }

    // Typed getters: the value converted where it fits, else a gguf_error naming the key,
    // what was wanted and what was found. find_* return nullopt for a missing key (a
    // present key of the wrong type still throws).
    std::string string(std::string_view key) const { return get_string(key, value(key)); }
    std::optional<std::string> find_string(std::string_view key) const {
        const auto* v = find(key);
        return v ? std::optional<std::string>(get_string(key, *v)) : std::nullopt;
    }
    // Any integer type whose value is >= 0.
    std::uint64_t uint(std::string_view key) const { return get_uint(key, value(key)); }
    std::optional<std::uint64_t> find_uint(std::string_view key) const {
        const auto* v = find(key);
        return v ? std::optional<std::uint64_t>(get_uint(key, *v)) : std::nullopt;
    }
    // Any integer type whose value fits int64.
    std::int64_t int_(std::string_view key) const { return get_int(key, value(key)); }
    std::optional<std::int64_t> find_int(std::string_view key) const {
        const auto* v = find(key);
        return v ? std::optional<std::int64_t>(get_int(key, *v)) : std::nullopt;
    }
    // float32 or float64.
    double real(std::string_view key) const { return get_real(key, value(key)); }
    std::optional<double> find_real(std::string_view key) const {
        const auto* v = find(key);
        return v ? std::optional<double>(get_real(key, *v)) : std::nullopt;
    }
    bool boolean(std::string_view key) const { return get_bool(key, value(key)); }
    std::optional<bool> find_bool(std::string_view key) const {
        const auto* v = find(key);
        return v ? std::optional<bool>(get_bool(key, *v)) : std::nullopt;
    }

    // Arrays. array() is the stored array; the others copy it out, checking the
    // element type: strings() an array of strings, floats() of float32 (or float64,
    // narrowed), ints() of any integer type whose every element fits int32.
    const gguf_array& array(std::string_view key) const {
        const gguf_value& v = value(key);
        if (const auto* a = std::get_if<gguf_array>(&v)) return *a;
        wrong_type(key, "an array", v);
    }
    std::vector<std::string> strings(std::string_view key) const {
        const gguf_array& a = array(key);
        if (a.type() != gguf_value_type::string) wrong_type(key, "an array of string", value(key));
        return a.strings();
    }
    std::vector<float> floats(std::string_view key) const {
        const gguf_array& a = array(key);
        std::vector<float> out(a.size());
        if (a.type() == gguf_value_type::f32) {
            if (!out.empty()) std::memcpy(out.data(), a.bytes().data(), out.size() * sizeof(float));
        } else if (a.type() == gguf_value_type::f64) {
            for (std::size_t i = 0; i < a.size(); ++i) out[i] = static_cast<float>(a.at<double>(i));
        } else {
            wrong_type(key, "an array of float32", value(key));
        }
        return out;
    }
    std::vector<std::int32_t> ints(std::string_view key) const {
        const gguf_array& a = array(key);
        if (a.type() == gguf_value_type::string || a.type() == gguf_value_type::boolean ||
            a.type() == gguf_value_type::f32 || a.type() == gguf_value_type::f64)
            wrong_type(key, "an array of int32", value(key));
        std::vector<std::int32_t> out(a.size());
        for (std::size_t i = 0; i < a.size(); ++i) {
            const auto n = a.visit_number(i, [](auto x) { return detail::as_integer(x); });
            const auto wide = n ? detail::to_int64(*n) : std::nullopt;
            if (!wide || *wide < std::numeric_limits<std::int32_t>::min() || *wide > std::numeric_limits<std::int32_t>::max())
                throw gguf_error(name_, key_field(key),
                                 "wanted an array of int32, found element " + std::to_string(i) + " = " +
                                     a.visit_number(i, [](auto x) { return describe(gguf_value(x)); }) + " (" +
                                     std::string(to_string(a.type())) + "), which does not fit");
            out[i] = static_cast<std::int32_t>(*wide);
        }
        return out;
    }

    // --- tensors --------------------------------------------------------------------
    const std::vector<gguf_tensor_info>& tensors() const noexcept { return tensors_; }  // in file order
    const gguf_tensor_info* find_tensor(std::string_view name) const {
        const auto it = tensor_index_.find(name);
        return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
    }
    const gguf_tensor_info& tensor(std::string_view name) const {
        if (const auto* t = find_tensor(name)) return *t;
        throw gguf_error(name_, "tensor '" + std::string(name) + "'", "is missing");
    }
    // The tensor's bytes, inside the file (no copy). `t` must describe a tensor of this
    // file; anything outside the file throws.
    std::span<const std::byte> data(const gguf_tensor_info& t) const {
        const auto begin = checked_add(data_offset_, t.offset);
        const auto end = begin ? checked_add(*begin, t.bytes) : std::nullopt;
        if (!end || *end > bytes_.size())
            throw gguf_error(name_, "tensor '" + t.name + "'", "is not a tensor of this file (its data lies outside it)");
        return bytes_.subspan(*begin, t.bytes);
    }

private:
    gguf_file(std::span<const std::byte> bytes, std::string name) : name_(std::move(name)), bytes_(bytes) { parse(); }

    static std::string key_field(std::string_view key) { return "key '" + std::string(key) + "'"; }

    [[noreturn]] void wrong_type(std::string_view key, const std::string& wanted, const gguf_value& found) const {
        std::string what = std::string(to_string(type_of(found)));
        if (const auto* a = std::get_if<gguf_array>(&found))
            what = "an array of " + std::string(to_string(a->type()));
        throw gguf_error(name_, key_field(key),
                         "wanted " + wanted + ", found " + what + " " + describe(found, 3, 40));
    }
    std::string get_string(std::string_view key, const gguf_value& v) const {
        if (const auto* s = std::get_if<std::string>(&v)) return *s;
        wrong_type(key, "a string", v);
    }
    std::uint64_t get_uint(std::string_view key, const gguf_value& v) const {
        const auto n = std::visit([](const auto& x) { return detail::as_integer(x); }, v);
        if (!n) wrong_type(key, "an unsigned integer", v);
        if (n->negative) wrong_type(key, "an unsigned integer (>= 0)", v);
        return n->magnitude;
    }
    std::int64_t get_int(std::string_view key, const gguf_value& v) const {
        const auto n = std::visit([](const auto& x) { return detail::as_integer(x); }, v);
        if (!n) wrong_type(key, "an integer", v);
        const auto i = detail::to_int64(*n);
        if (!i) wrong_type(key, "an integer that fits int64", v);
        return *i;
    }
    double get_real(std::string_view key, const gguf_value& v) const {
        if (const auto* f = std::get_if<float>(&v)) return *f;
        if (const auto* d = std::get_if<double>(&v)) return *d;
        wrong_type(key, "a float32 or float64", v);
    }
    bool get_bool(std::string_view key, const gguf_value& v) const {
        if (const auto* b = std::get_if<bool>(&v)) return *b;
        wrong_type(key, "a bool", v);
    }

    // One scalar of type `t` at the cursor.
    static gguf_value read_scalar(detail::gguf_cursor& in, gguf_value_type t, const std::string& field) {
        switch (t) {
            case gguf_value_type::u8: return in.read<std::uint8_t>(field, "a uint8 value");
            case gguf_value_type::i8: return in.read<std::int8_t>(field, "an int8 value");
            case gguf_value_type::u16: return in.read<std::uint16_t>(field, "a uint16 value");
            case gguf_value_type::i16: return in.read<std::int16_t>(field, "an int16 value");
            case gguf_value_type::u32: return in.read<std::uint32_t>(field, "a uint32 value");
            case gguf_value_type::i32: return in.read<std::int32_t>(field, "an int32 value");
            case gguf_value_type::f32: return in.read<float>(field, "a float32 value");
            case gguf_value_type::u64: return in.read<std::uint64_t>(field, "a uint64 value");
            case gguf_value_type::i64: return in.read<std::int64_t>(field, "an int64 value");
            case gguf_value_type::f64: return in.read<double>(field, "a float64 value");
            case gguf_value_type::string: return in.read_string(field, "a string");
            case gguf_value_type::boolean: {
                const auto b = in.read<std::uint8_t>(field, "a bool value");
                if (b > 1) in.fail(field, "bool value is " + std::to_string(b) + "; expected 0 or 1");
                return b == 1;
            }
            default: in.fail(field, "value type " + std::to_string(static_cast<std::uint32_t>(t)) + " cannot be a scalar");
        }
    }

    static gguf_value_type read_value_type(detail::gguf_cursor& in, const std::string& field, const char* what) {
        const auto id = in.read<std::uint32_t>(field, what);
        if (id > static_cast<std::uint32_t>(gguf_value_type::f64))
            in.fail(field, "unknown value type " + std::to_string(id) + " (GGUF defines 0 to 12)");
        return static_cast<gguf_value_type>(id);
    }

    static gguf_value read_value(detail::gguf_cursor& in, const std::string& field) {
        const auto type = read_value_type(in, field, "a value type");
        if (type != gguf_value_type::array) return read_scalar(in, type, field);
        const auto element = read_value_type(in, field, "an array's element type");
        if (element == gguf_value_type::array) in.fail(field, "is an array of arrays, which kvdecode does not support");
        const auto count = in.read<std::uint64_t>(field, "an array's length");
        const std::string what = "an array of " + std::to_string(count) + " " + std::string(to_string(element));
        if (element == gguf_value_type::string) {
            // Each string takes at least its 8-byte length: check the count before reserving.
            if (count > in.remaining() / sizeof(std::uint64_t))
                in.fail(field, what + " (at least 8 bytes each) at offset " + std::to_string(in.position()) +
                                   " runs past the end of the file (" + std::to_string(in.position() + in.remaining()) +
                                   " bytes)");
            std::vector<std::string> strings;
            strings.reserve(count);
            for (std::uint64_t i = 0; i < count; ++i) strings.push_back(in.read_string(field, "a string in an array"));
            return gguf_array(std::move(strings));
        }
        const std::size_t size = gguf_value_size(element);
        if (count > in.remaining() / size)
            in.fail(field, what + " at offset " + std::to_string(in.position()) + " runs past the end of the file (" +
                               std::to_string(in.position() + in.remaining()) + " bytes)");
        const auto raw = in.take(count * size, field, what);
        if (element == gguf_value_type::boolean)
            for (std::size_t i = 0; i < raw.size(); ++i)
                if (raw[i] != std::byte{0} && raw[i] != std::byte{1})
                    in.fail(field, "bool element " + std::to_string(i) + " is " +
                                       std::to_string(std::to_integer<int>(raw[i])) + "; expected 0 or 1");
        return gguf_array::from_bytes(element, raw);
    }

    void parse() {
        detail::gguf_cursor in(bytes_, name_);
        // Header.
        if (bytes_.size() < 4) in.fail("header", "the file has " + std::to_string(bytes_.size()) + " bytes, too few for the magic 'GGUF'");
        const auto magic = in.take(4, "header", "the magic");
        if (std::memcmp(magic.data(), "GGUF", 4) != 0) {
            std::string shown;
            for (std::byte b : magic) {
                const auto c = std::to_integer<unsigned char>(b);
                shown += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
            }
            in.fail("header", "not a GGUF file: the magic is '" + shown + "', expected 'GGUF'");
        }
        version_ = in.read<std::uint32_t>("header", "the version");
        if (version_ != 0 && (version_ & 0xffffu) == 0) {
            char hex[16];
            std::snprintf(hex, sizeof hex, "0x%08x", version_);
            in.fail("header", std::string("the version reads ") + hex +
                                  ": a big-endian (byte-swapped) GGUF file; kvdecode reads little-endian files only");
        }
        if (version_ == 1)
            in.fail("header", "GGUF version 1 is not supported (an early format with 32-bit counts; kvdecode reads versions 2 and 3)");
        if (version_ != 2 && version_ != 3)
            in.fail("header", "GGUF version " + std::to_string(version_) + " is not supported (kvdecode reads versions 2 and 3)");
        const auto n_tensors = in.read<std::uint64_t>("header", "the tensor count");
        const auto n_kv = in.read<std::uint64_t>("header", "the metadata count");

        // Metadata. A pair takes at least 8 (key length) + 1 (key) + 4 (type) + 1 bytes.
        constexpr std::uint64_t min_kv_bytes = 14;
        if (n_kv > in.remaining() / min_kv_bytes)
            in.fail("header", std::to_string(n_kv) + " metadata entries (at least " + std::to_string(min_kv_bytes) +
                                  " bytes each) do not fit in the " + std::to_string(in.remaining()) +
                                  " bytes after the header");
        metadata_.reserve(n_kv);
        for (std::uint64_t i = 0; i < n_kv; ++i) {
            const std::string entry = "metadata entry " + std::to_string(i);
            std::string key = in.read_string(entry, "a key");
            if (key.empty()) in.fail(entry, "the key is empty");
            const std::string field = key_field(key);
            if (key_index_.count(key)) in.fail(field, "appears twice (entries " + std::to_string(key_index_.find(key)->second) + " and " + std::to_string(i) + ")");
            gguf_value v = read_value(in, field);
            key_index_.emplace(key, metadata_.size());
            metadata_.push_back({std::move(key), std::move(v)});
        }
        alignment_ = default_alignment;
        if (const auto* a = find("general.alignment")) {
            const auto* u = std::get_if<std::uint32_t>(a);
            if (!u) wrong_type("general.alignment", "a uint32", *a);
            if (*u == 0 || (*u & (*u - 1)) != 0)
                in.fail(key_field("general.alignment"), "is " + std::to_string(*u) + "; expected a power of two");
            alignment_ = *u;
        }

        // Tensor infos. One takes at least 8 + 1 (name) + 4 (n_dims) + 8 (a dim) + 4 (type) + 8 (offset) bytes.
        constexpr std::uint64_t min_info_bytes = 33;
        if (n_tensors > in.remaining() / min_info_bytes)
            in.fail("header", std::to_string(n_tensors) + " tensor infos (at least " + std::to_string(min_info_bytes) +
                                  " bytes each) do not fit in the " + std::to_string(in.remaining()) +
                                  " bytes after the metadata");
        tensors_.reserve(n_tensors);
        for (std::uint64_t i = 0; i < n_tensors; ++i) {
            gguf_tensor_info t;
            t.name = in.read_string("tensor " + std::to_string(i), "a tensor name");
            if (t.name.empty()) in.fail("tensor " + std::to_string(i), "the name is empty");
            const std::string field = "tensor '" + t.name + "'";
            if (tensor_index_.count(t.name))
                in.fail(field, "appears twice (tensors " + std::to_string(tensor_index_.find(t.name)->second) + " and " +
                                   std::to_string(i) + ")");
            const auto n_dims = in.read<std::uint32_t>(field, "n_dims");
            if (n_dims == 0 || n_dims > 4)
                in.fail(field, "n_dims is " + std::to_string(n_dims) + "; expected 1 to 4");
            for (std::uint32_t d = 0; d < n_dims; ++d) t.shape.push_back(in.read<std::uint64_t>(field, "a dimension"));
            const auto type_id = in.read<std::uint32_t>(field, "the type");
            const auto* traits = find_gguf_type(type_id);
            if (!traits) {
                const auto removed = detail::removed_gguf_type_name(type_id);
                if (!removed.empty())
                    in.fail(field, "has type id " + std::to_string(type_id) + " (" + std::string(removed) +
                                       "), which ggml removed from GGUF files");
                in.fail(field, "has unknown type id " + std::to_string(type_id));
            }
            t.type = traits->type;
            const auto size = detail::tensor_size(*traits, t.shape);
            if (!size.problem.empty())
                in.fail(field, "of type " + std::string(traits->name) + " and shape " + detail::shape_string(t.shape) +
                                   ": " + size.problem);
            t.bytes = size.bytes;
            t.offset = in.read<std::uint64_t>(field, "the data offset");
            if (t.offset % alignment_ != 0)
                in.fail(field, "data offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
                                   std::to_string(alignment_));
            tensor_index_.emplace(t.name, tensors_.size());
            tensors_.push_back(std::move(t));
        }

        // The data section starts at the next multiple of the alignment; every tensor lies in
        // it, inside the file, and no two overlap.
        const std::uint64_t end_of_infos = in.position();
        data_offset_ = (end_of_infos + alignment_ - 1) / alignment_ * alignment_;  // cannot overflow: <= size + 2^32
        if (tensors_.empty()) {
            data_offset_ = std::min<std::uint64_t>(data_offset_, bytes_.size());
            return;
        }
        if (data_offset_ > bytes_.size())
            in.fail("data section", "starts at offset " + std::to_string(data_offset_) +
                                        " (the tensor infos end at " + std::to_string(end_of_infos) +
                                        ", padded to the alignment " + std::to_string(alignment_) +
                                        "), past the end of the file (" + std::to_string(bytes_.size()) + " bytes)");
        for (const auto& t : tensors_) {
            const auto begin = checked_add(data_offset_, t.offset);
            const auto end = begin ? checked_add(*begin, t.bytes) : std::nullopt;
            if (!end || *end > bytes_.size())
                in.fail("tensor '" + t.name + "'",
                        "data [" + (begin ? std::to_string(*begin) : std::string("2^64+")) + ", " +
                            (end ? std::to_string(*end) : std::string("2^64+")) + ") runs past the end of the file (" +
                            std::to_string(bytes_.size()) + " bytes)");
        }
        std::vector<std::size_t> order(tensors_.size());
        std::iota(order.begin(), order.end(), std::size_t{0});
        std::sort(order.begin(), order.end(),
                  [&](std::size_t a, std::size_t b) { return tensors_[a].offset < tensors_[b].offset; });
        for (std::size_t i = 1; i < order.size(); ++i) {
            const auto& prev = tensors_[order[i - 1]];
            const auto& next = tensors_[order[i]];
            if (prev.offset + prev.bytes > next.offset)
                in.fail("tensor '" + next.name + "'",
                        "data [" + std::to_string(data_offset_ + next.offset) + ", " +
                            std::to_string(data_offset_ + next.offset + next.bytes) + ") overlaps tensor '" + prev.name +
                            "' [" + std::to_string(data_offset_ + prev.offset) + ", " +
                            std::to_string(data_offset_ + prev.offset + prev.bytes) + ")");
        }
    }

    std::string name_;
    std::span<const std::byte> bytes_;
    std::shared_ptr<const void> owner_;
    std::uint32_t version_ = 0;
    std::uint64_t alignment_ = default_alignment;
    std::uint64_t data_offset_ = 0;
    std::vector<gguf_kv> metadata_;
    std::map<std::string, std::size_t, std::less<>> key_index_;
    std::vector<gguf_tensor_info> tensors_;
    std::map<std::string, std::size_t, std::less<>> tensor_index_;
};

// What describe() prints.
struct gguf_describe_options {
    std::size_t max_array_items = 8;  // of each array, the first this many
    std::size_t max_string_chars = 80;
    bool tensors = true;              // list the tensors (else only their count per type)
};

// A listing of the file: version, alignment, every metadata entry with its type and
// value, tensor counts per type, and (optionally) every tensor's type, shape and place.
inline std::string describe(const gguf_file& f, const gguf_describe_options& options = {}) {
    std::ostringstream out;
    out << f.name() << ": GGUF version " << f.version() << ", " << f.size() << " bytes, alignment " << f.alignment()
        << ", data at offset " << f.data_offset() << "\n";
    out << f.metadata().size() << " metadata entries:\n";
    for (const auto& kv : f.metadata()) {
        out << "  " << kv.key << " (" << to_string(type_of(kv.value)) << ") = "
            << describe(kv.value, options.max_array_items, options.max_string_chars) << "\n";
    }
    std::map<std::string_view, std::size_t> per_type;
    for (const auto& t : f.tensors()) ++per_type[to_string(t.type)];
    out << f.tensors().size() << " tensors:";
    for (const auto& [type, n] : per_type) out << " " << type << " x" << n;
    out << "\n";
    if (options.tensors)
        for (const auto& t : f.tensors())
            out << "  " << t.name << " " << to_string(t.type) << " " << detail::shape_string(t.shape) << " at "
                << f.data_offset() + t.offset << ", " << t.bytes << " bytes\n";
    return out.str();
}

}  // namespace kvdecode
