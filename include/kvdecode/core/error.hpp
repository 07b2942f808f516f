#pragma once
// Exceptions the library throws. Bad arguments use std::invalid_argument; these
// two name failures that a caller may want to catch on their own.

#include <stdexcept>
#include <string>
#include <utility>

namespace kvdecode {

// A model or tokenizer file that cannot be used: the message names the file, the
// field or tensor, and what was expected and found.
class model_format_error : public std::runtime_error {
public:
    model_format_error(std::string file, std::string field, const std::string& expected,
                       const std::string& found)
        : std::runtime_error("kvdecode: " + file + ": " + field + ": expected " + expected +
                             ", found " + found),
          file_(std::move(file)), field_(std::move(field)) {}

    const std::string& file() const noexcept { return file_; }
    const std::string& field() const noexcept { return field_; }

private:
    std::string file_;
    std::string field_;
};

// The KV cache has no free block (or no free sequence slot) for a request. The
// cache is left exactly as it was before the failing call.
class cache_full : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

}  // namespace kvdecode
