#pragma once
// Exceptions the library throws. Bad arguments use std::invalid_argument; these
// name failures that a caller may want to catch on their own.

#include <cstddef>
#include <stdexcept>
#include <string>
#include <system_error>
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

protected:
    // For subclasses whose message does not fit "expected ..., found ...": `what` is
    // the whole message (it still names the file and the field).
    struct whole_message {};
    model_format_error(whole_message, std::string file, std::string field, const std::string& what)
        : std::runtime_error(what), file_(std::move(file)), field_(std::move(field)) {}

private:
    std::string file_;
    std::string field_;
};

// A model_format_error whose problem is not a value found where another was expected
// (a malformed file, an offset outside it, an unsupported option): what() is
// "kvdecode: FILE: FIELD: problem". Thrown by the safetensors and Hugging Face readers.
class file_format_error : public model_format_error {
public:
    file_format_error(const std::string& file, const std::string& field, const std::string& problem)
        : model_format_error(whole_message{}, file, field, "kvdecode: " + file + ": " + field + ": " + problem) {}
};

// The KV cache has no free block (or no free sequence slot) for a request. The
// cache is left exactly as it was before the failing call.
class cache_full : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// A thread pool could not start one of its threads (the system's thread or memory
// limit). Threads it had started are stopped and joined before this is thrown; the
// system's error code is kept.
class thread_start_error : public std::system_error {
public:
    // `worker` (1 .. threads - 1) is the worker that failed to start; what() ends
    // with the system's message, as every std::system_error's does.
    thread_start_error(std::size_t threads, std::size_t worker, std::error_code code)
        : std::system_error(code, "kvdecode: thread_pool of " + std::to_string(threads) +
                                      " threads: could not start worker thread " + std::to_string(worker) + " of " +
                                      std::to_string(threads - 1)),
          threads_(threads) {}

    std::size_t threads() const noexcept { return threads_; }

private:
    std::size_t threads_;
};

}  // namespace kvdecode
