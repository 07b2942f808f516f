#pragma once
// Writer for GGUF version 3 files, laid out as llama.cpp lays them out: header,
// metadata in the order it was set, tensor infos in the order tensors were added,
// zero padding to general.alignment (default 32), then each tensor's data padded
// with zeros to the alignment. A file read by gguf_file and written back with the
// same metadata and tensors is byte-identical (tests/io/gguf_writer_test.cpp).
//
// write() is atomic: the file is written under a temporary name in the target's
// folder, flushed, then renamed over the target, so a failed write leaves no half file
// (and an input mapped from the target path stays readable while it is replaced).

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <variant>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvdecode/io/gguf.hpp"

namespace kvdecode {

class gguf_writer {
public:
    // ggml keeps tensor names in a 64-byte field with its terminating zero.
    static constexpr std::size_t max_name_bytes = 63;

    // --- metadata -------------------------------------------------------------------
    // Sets a value: an existing key keeps its place and takes the new value, a new key
    // goes last. general.alignment must be a uint32 power of two.
    gguf_writer& set(std::string key, gguf_value value) {
        if (key.empty()) throw std::invalid_argument("kvdecode: gguf_writer: a metadata key must not be empty");
        if (key == "general.alignment") checked_alignment(&value);
        for (auto& kv : metadata_)
            if (kv.key == key) {
                kv.value = std::move(value);
                return *this;
            }
        metadata_.push_back({std::move(key), std::move(value)});
        return *this;
    }
    gguf_writer& set(std::string key, const char* value) { return set(std::move(key), gguf_value(std::string(value))); }
    template <class T>
    gguf_writer& set(std::string key, const std::vector<T>& values) {
        return set(std::move(key), gguf_value(gguf_array(values)));
    }
    gguf_writer& set(std::string key, std::vector<std::string> values) {
        return set(std::move(key), gguf_value(gguf_array(std::move(values))));
    }

    // Removes a key; false if it was not set.
    bool remove(std::string_view key) {
        for (auto it = metadata_.begin(); it != metadata_.end(); ++it)
            if (it->key == key) {
                metadata_.erase(it);
                return true;
            }
        return false;
    }

    const gguf_value* find(std::string_view key) const {
        for (const auto& kv : metadata_)
            if (kv.key == key) return &kv.value;
        return nullptr;
    }
    const std::vector<gguf_kv>& metadata() const noexcept { return metadata_; }

    // Every metadata entry of `f` in its order (general.alignment included), as set() would.
    gguf_writer& copy_metadata(const gguf_file& f) {
        for (const auto& kv : f.metadata()) set(kv.key, kv.value);
        return *this;
    }

    // --- tensors --------------------------------------------------------------------
    // Adds a tensor: `shape` in ggml order (shape[0] is the row length), `bytes` its data
    // in the GGUF layout, of exactly the size the type and shape give. This overload
    // copies the bytes.
    gguf_writer& add_tensor(std::string name, std::vector<std::uint64_t> shape, gguf_type type,
                            std::span<const std::byte> bytes) {
        auto copy = std::make_shared<std::vector<std::byte>>(bytes.begin(), bytes.end());
        const std::span<const std::byte> view(*copy);
        return add(std::move(name), std::move(shape), type, view, std::move(copy));
    }
    // No copy: `owner` keeps `bytes` alive until this writer is gone (e.g. gguf_file::owner()
    // of the file they lie in). With an empty owner the caller keeps them alive.
    gguf_writer& add_tensor(std::string name, std::vector<std::uint64_t> shape, gguf_type type,
                            std::span<const std::byte> bytes, std::shared_ptr<const void> owner) {
        return add(std::move(name), std::move(shape), type, bytes, std::move(owner));
    }
    // A tensor of an open file as it is (name, shape, type, bytes), without a copy: the
    // file's mapping is kept alive (a from_memory file's bytes the caller keeps alive).
    gguf_writer& copy_tensor(const gguf_file& f, const gguf_tensor_info& t) {
        return add(t.name, t.shape, t.type, f.data(t), f.owner());
    }
    // The tensors as they will be written: offsets from the data start with the current alignment.
    std::vector<gguf_tensor_info> tensors() const {
        std::vector<gguf_tensor_info> out;
        const std::uint64_t align = alignment();
        std::uint64_t offset = 0;
        for (const auto& t : tensors_) {
            out.push_back(t.info);
            out.back().offset = offset;
            offset += padded(t.info.bytes, align);
        }
        return out;
    }

    // general.alignment if set, else 32.
    std::uint64_t alignment() const {
        const auto* v = find("general.alignment");
        return v ? checked_alignment(v) : gguf_file::default_alignment;
    }

    // --- output ---------------------------------------------------------------------
    // The whole file in memory (for tests and small files; write() streams).
    std::vector<std::byte> to_bytes() const {
        std::vector<std::byte> out;
        emit([&](const void* p, std::size_t n) {
            const auto* b = static_cast<const std::byte*>(p);
            out.insert(out.end(), b, b + n);
        });
        return out;
    }

    // Writes the file at `path` (replacing it) atomically: a temporary file beside it,
    // flushed and renamed over it; on any failure the temporary file is removed and
    // the target left as it was. Throws std::system_error naming the path.
    void write(const std::filesystem::path& path) const {
        const std::filesystem::path folder = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
        std::string temp = (folder / ("." + path.filename().string() + ".partial-XXXXXX")).string();
        const int fd = ::mkstemp(temp.data());
        if (fd < 0) fail_io(errno, "cannot create a temporary file in " + folder.string());
        try {
            if (::fchmod(fd, 0644) != 0) fail_io(errno, "cannot set the permissions of " + temp);
            std::vector<std::byte> buffer;
            buffer.reserve(buffer_bytes);
            auto flush = [&] {
                std::size_t done = 0;
                while (done < buffer.size()) {
                    const ::ssize_t n = ::write(fd, buffer.data() + done, buffer.size() - done);
                    if (n < 0 && errno == EINTR) continue;
                    if (n <= 0) fail_io(n < 0 ? errno : EIO, "cannot write " + temp);
                    done += static_cast<std::size_t>(n);
                }
                buffer.clear();
            };
            emit([&](const void* p, std::size_t n) {
                const auto* b = static_cast<const std::byte*>(p);
                while (n > 0) {
                    const std::size_t take = std::min(n, buffer_bytes - buffer.size());
                    buffer.insert(buffer.end(), b, b + take);
                    b += take;
                    n -= take;
                    if (buffer.size() == buffer_bytes) flush();
                }
            });
            flush();
            if (::fsync(fd) != 0) fail_io(errno, "cannot flush " + temp);
            if (::close(fd) != 0) {
                const int e = errno;
                ::unlink(temp.c_str());
                fail_io(e, "cannot close " + temp);
            }
        } catch (...) {
            ::close(fd);
            ::unlink(temp.c_str());
            throw;
        }
        if (::rename(temp.c_str(), path.c_str()) != 0) {
            const int e = errno;
            ::unlink(temp.c_str());
            fail_io(e, "cannot rename " + temp + " to " + path.string());
        }
    }

private:
    struct tensor_entry {
        gguf_tensor_info info;  // offset unused: computed when writing
        std::span<const std::byte> bytes;
        std::shared_ptr<const void> owner;
    };

    static constexpr std::size_t buffer_bytes = 1 << 20;

    static std::uint64_t padded(std::uint64_t n, std::uint64_t align) { return (n + align - 1) / align * align; }

    static std::uint64_t checked_alignment(const gguf_value* v) {
        const auto* u = std::get_if<std::uint32_t>(v);
        if (!u) throw std::invalid_argument("kvdecode: gguf_writer: general.alignment must be a uint32, not " +
                                            std::string(to_string(type_of(*v))));
        if (*u == 0 || (*u & (*u - 1)) != 0)
            throw std::invalid_argument("kvdecode: gguf_writer: general.alignment must be a power of two, not " +
                                        std::to_string(*u));
        return *u;
    }

    [[noreturn]] static void fail_io(int error, const std::string& what) {
        throw std::system_error(error, std::generic_category(), "kvdecode: gguf_writer: " + what);
    }

    gguf_writer& add(std::string name, std::vector<std::uint64_t> shape, gguf_type type, std::span<const std::byte> bytes,
                     std::shared_ptr<const void> owner) {
        auto bad = [&](const std::string& problem) {
            throw std::invalid_argument("kvdecode: gguf_writer: tensor '" + name + "': " + problem);
        };
        if (name.empty()) bad("the name is empty");
        if (name.size() > max_name_bytes)
            bad("the name has " + std::to_string(name.size()) + " bytes; ggml allows " + std::to_string(max_name_bytes));
        for (const auto& t : tensors_)
            if (t.info.name == name) bad("a tensor of this name was already added");
        if (!find_gguf_type(static_cast<std::uint32_t>(type)))
            bad("type id " + std::to_string(static_cast<std::uint32_t>(type)) + " is not a ggml type");
        const auto size = detail::tensor_size(traits(type), shape);
        if (!size.problem.empty())
            bad("of type " + std::string(to_string(type)) + " and shape " + detail::shape_string(shape) + ": " + size.problem);
        if (size.bytes != bytes.size())
            bad(std::to_string(bytes.size()) + " bytes given; a " + std::string(to_string(type)) + " tensor of shape " +
                detail::shape_string(shape) + " takes " + std::to_string(size.bytes));
        tensor_entry e;
        e.info.name = std::move(name);
        e.info.shape = std::move(shape);
        e.info.type = type;
        e.info.bytes = size.bytes;
        e.bytes = bytes;
        e.owner = std::move(owner);
        tensors_.push_back(std::move(e));
        return *this;
    }

    // Calls out(pointer, bytes) for the whole file, in order.
    template <class Out>
    void emit(Out&& out) const {
        std::uint64_t written = 0;
        auto put_bytes = [&](const void* p, std::size_t n) {
            if (n) out(p, n);
            written += n;
        };
        auto put = [&](auto v) { put_bytes(&v, sizeof v); };  // little-endian, as the format
        auto put_string = [&](const std::string& s) {
            put(static_cast<std::uint64_t>(s.size()));
            put_bytes(s.data(), s.size());
        };
        static constexpr std::byte zeros[64] = {};
        auto pad = [&](std::uint64_t align) {
            for (std::uint64_t n = (align - written % align) % align; n > 0;) {
                const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(n, sizeof zeros));
                put_bytes(zeros, take);
                n -= take;
            }
        };
        const std::uint64_t align = alignment();

        put_bytes("GGUF", 4);
        put(std::uint32_t{3});
        put(static_cast<std::uint64_t>(tensors_.size()));
        put(static_cast<std::uint64_t>(metadata_.size()));
        for (const auto& kv : metadata_) {
            put_string(kv.key);
            put(static_cast<std::uint32_t>(kv.value.index()));
            std::visit(
                [&](const auto& v) {
                    using V = std::decay_t<decltype(v)>;
                    if constexpr (std::is_same_v<V, std::string>) {
                        put_string(v);
                    } else if constexpr (std::is_same_v<V, gguf_array>) {
                        put(static_cast<std::uint32_t>(v.type()));
                        put(static_cast<std::uint64_t>(v.size()));
                        if (v.type() == gguf_value_type::string)
                            for (const auto& s : v.strings()) put_string(s);
                        else
                            put_bytes(v.bytes().data(), v.bytes().size());
                    } else if constexpr (std::is_same_v<V, bool>) {
                        put(static_cast<std::uint8_t>(v ? 1 : 0));
                    } else {
                        put(v);
                    }
                },
                kv.value);
        }
        std::uint64_t offset = 0;
        for (const auto& t : tensors_) {
            put_string(t.info.name);
            put(static_cast<std::uint32_t>(t.info.shape.size()));
            for (auto d : t.info.shape) put(d);
            put(static_cast<std::uint32_t>(t.info.type));
            put(offset);
            offset += padded(t.info.bytes, align);
        }
        pad(align);
        for (const auto& t : tensors_) {
            put_bytes(t.bytes.data(), t.bytes.size());
            pad(align);
        }
    }

    std::vector<gguf_kv> metadata_;
    std::vector<tensor_entry> tensors_;
};

}  // namespace kvdecode
