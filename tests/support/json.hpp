#pragma once
// JSON in the tests (the golden files, the shipped model's reference outputs):
// nlohmann-json, a dependency of the tests only; the library reads no JSON.

#include <nlohmann/json.hpp>

namespace kvtest {

using json = nlohmann::json;

}  // namespace kvtest
