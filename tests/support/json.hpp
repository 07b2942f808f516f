#pragma once
// JSON in the tests (the golden files, the shipped model's reference outputs):
// nlohmann-json (the library reads config.json, tokenizer.json and safetensors
// headers with it too, through kvdecode::hf).

#include <nlohmann/json.hpp>

namespace kvtest {

using json = nlohmann::json;

}  // namespace kvtest
