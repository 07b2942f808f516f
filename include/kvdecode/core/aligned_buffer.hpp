#pragma once
// An owning, zero-initialised, 64-byte aligned array: the storage behind weights,
// activations and the KV cache. Allocated once; never resized on the hot path.

#include <cstddef>
#include <cstring>
#include <new>
#include <span>
#include <type_traits>
#include <utility>

namespace kvdecode {

template <class T>
class aligned_buffer {
    static_assert(std::is_trivially_copyable_v<T>, "aligned_buffer holds plain numbers");

public:
    static constexpr std::size_t alignment = 64;  // one cache line, one AVX-512 register

    aligned_buffer() = default;
    explicit aligned_buffer(std::size_t size) : size_(size) {
        if (size_ == 0) return;
        data_ = static_cast<T*>(::operator new[](size_ * sizeof(T), std::align_val_t{alignment}));
        std::memset(static_cast<void*>(data_), 0, size_ * sizeof(T));
    }
    aligned_buffer(const aligned_buffer& other) : aligned_buffer(other.size_) {
        if (size_ != 0) std::memcpy(static_cast<void*>(data_), other.data_, size_ * sizeof(T));
    }
    aligned_buffer(aligned_buffer&& other) noexcept
        : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
    aligned_buffer& operator=(aligned_buffer other) noexcept {
        std::swap(data_, other.data_);
        std::swap(size_, other.size_);
        return *this;
    }
    ~aligned_buffer() {
        if (data_ != nullptr) ::operator delete[](data_, std::align_val_t{alignment});
    }

    T* data() noexcept { return data_; }
    const T* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    T& operator[](std::size_t i) noexcept { return data_[i]; }
    const T& operator[](std::size_t i) const noexcept { return data_[i]; }
    std::span<T> span() noexcept { return {data_, size_}; }
    std::span<const T> span() const noexcept { return {data_, size_}; }

private:
    T* data_ = nullptr;
    std::size_t size_ = 0;
};

}  // namespace kvdecode
