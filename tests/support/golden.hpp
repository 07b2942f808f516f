#pragma once
// The golden files of ../shared/golden, each with the checkpoint it was made from.

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "kvdecode/io/llama2c_checkpoint.hpp"
#include "support/json.hpp"
#include "support/test_data.hpp"

namespace kvtest {

struct golden_set {
    std::string name;  // the golden file, relative to ../shared
    json data;         // {"checkpoint", "config", "cases"}
    std::shared_ptr<const kvdecode::transformer_weights<float>> weights;
};

// Both golden files with their models; empty (after a warning) where ../shared is absent.
inline std::vector<golden_set> golden_sets() {
    std::vector<golden_set> sets;
    for (const char* name : {"golden/hf_aidreams260K.json", "golden/hf_eos_stories260K.json"}) {
        const auto golden_path = shared_file(name);
        if (!golden_path) return {};
        json data = json::parse(read_text(*golden_path));
        const auto model_path =
            shared_file("models/" + std::filesystem::path(data.at("checkpoint").get<std::string>()).filename().string());
        if (!model_path) return {};
        sets.push_back({name, std::move(data),
                        std::make_shared<const kvdecode::transformer_weights<float>>(
                            kvdecode::read_llama2c_checkpoint<float>(*model_path))});
    }
    return sets;
}

}  // namespace kvtest
