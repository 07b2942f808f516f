#pragma once
// A read-only private memory mapping of a whole file, for the readers that use tensor
// bytes in place (GGUF, safetensors). Failures throw the reader's own error type,
// constructed as Error(file, "file", problem).

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <system_error>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace kvdecode::detail {

// A read-only private mapping of a whole file; unmapped when the last owner goes.
template <class Error>
class mapped_file {
public:
    explicit mapped_file(const std::filesystem::path& path) {
        const std::string name = path.string();
        std::error_code ec;
        const auto status = std::filesystem::status(path, ec);
        if (ec || !std::filesystem::exists(status))
            throw Error(name, "file", "expected an existing file, found nothing at this path");
        if (std::filesystem::is_directory(status))
            throw Error(name, "file", "expected a regular file, found a directory");
        if (!std::filesystem::is_regular_file(status))
            throw Error(name, "file", "expected a regular file, found a special file");
        const int fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) throw Error(name, "file", std::string("cannot be opened: ") + std::strerror(errno));
        struct ::stat st {};
        if (::fstat(fd, &st) != 0) {
            const int e = errno;
            ::close(fd);
            throw Error(name, "file", std::string("cannot be examined: ") + std::strerror(e));
        }
        size_ = static_cast<std::size_t>(st.st_size);
        if (size_ > 0) {
            void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
            const int e = errno;
            ::close(fd);
            if (p == MAP_FAILED)
                throw Error(name, "file", "cannot be memory-mapped (" + std::to_string(size_) +
                                                   " bytes): " + std::strerror(e));
            data_ = p;
        } else {
            ::close(fd);
        }
    }
    ~mapped_file() {
        if (data_) ::munmap(data_, size_);
    }
    mapped_file(const mapped_file&) = delete;
    mapped_file& operator=(const mapped_file&) = delete;

    std::span<const std::byte> bytes() const noexcept {
        return data_ ? std::span<const std::byte>(static_cast<const std::byte*>(data_), size_)
                     : std::span<const std::byte>();
    }

private:
    void* data_ = nullptr;
    std::size_t size_ = 0;
};

}  // namespace kvdecode::detail
