// The shipped encoder-decoder (models/digits.gguf, trained by tools/train/digits): its
// logits equal the training script's own forward (models/digits_reference.json), it
// reads the shipped held-out numbers (models/digits-test, images the model never saw)
// as well as the issue asks, and the cache changes no output. Part of the repository,
// so these tests run on every clone.

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kvdecode/decode/beam_search.hpp"
#include "kvdecode/decode/generate.hpp"
#include "kvdecode/io/seq2seq_gguf.hpp"
#include "kvdecode/model/seq2seq_context.hpp"
#include "kvdecode/model/seq2seq_reference.hpp"
#include "support/json.hpp"

#ifndef KVDECODE_MODELS_DIR
#error "KVDECODE_MODELS_DIR must name the project's models/ folder"
#endif

using namespace kvdecode;

namespace {

const std::filesystem::path models_dir = KVDECODE_MODELS_DIR;

const seq2seq_gguf& shipped() {
    static const seq2seq_gguf f = read_seq2seq_gguf(models_dir / "digits.gguf");
    return f;
}

// The shipped test images are binary PGM (P5, maxval 255), as make_testset.py writes them.
std::vector<float> patches_of(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::string magic;
    std::size_t width = 0, height = 0, maxval = 0;
    in >> magic >> width >> height >> maxval;
    in.get();
    if (magic != "P5" || maxval != 255) throw std::runtime_error(path.string() + ": not a binary 8-bit PGM");
    std::vector<std::uint8_t> pixels(width * height);
    in.read(reinterpret_cast<char*>(pixels.data()), static_cast<std::streamsize>(pixels.size()));
    return image_patches(pixels, width, height, *shipped().patches, shipped().weights.config().max_source_length);
}

struct labelled {
    std::filesystem::path path;
    std::string digits;
};

std::vector<labelled> test_set() {
    std::vector<labelled> out;
    for (const auto& e : std::filesystem::directory_iterator(models_dir / "digits-test")) {
        const std::string stem = e.path().stem().string();
        out.push_back({e.path(), stem.substr(stem.find('_') + 1)});
    }
    std::sort(out.begin(), out.end(), [](const labelled& a, const labelled& b) { return a.path < b.path; });
    return out;
}

std::string text(const std::vector<token_id>& tokens) {  // BOS first; EOS, if any, last
    std::string s;
    for (std::size_t i = 1; i < tokens.size(); ++i)
        if (tokens[i] != *shipped().ids.eos) s += shipped().tokens[static_cast<std::size_t>(tokens[i])];
    return s;
}

std::size_t edit_distance(const std::string& a, const std::string& b) {
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diagonal = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t up = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diagonal = up;
        }
    }
    return row[b.size()];
}

}  // namespace

TEST_CASE("digits model: logits equal the training script's forward", "[model][seq2seq][shipped]") {
    const auto reference = kvtest::json::parse(std::ifstream(models_dir / "digits_reference.json"));
    const seq2seq_model<float> model(shipped().weights);
    seq2seq_context<float> ctx(model, {.threads = GENERATE(std::size_t{1}, std::size_t{3}), .min_work_per_thread = 1});
    auto cache = model.make_cache({.capacity_tokens = 256});
    REQUIRE(reference["cases"].size() == 8);
    for (const auto& c : reference["cases"]) {
        INFO(c["file"].get<std::string>());
        cache.bind_new_sequences(std::vector{ctx.encode(source_view<float>{.vectors = patches_of(models_dir / "digits-test" /
                                                                                                   c["file"].get<std::string>())})});
        const seq_id s = cache.create();
        std::vector<token_id> feed = {*shipped().ids.bos};
        std::vector<float> logits(12);
        for (std::size_t step = 0; step < c["logits"].size(); ++step) {
            ctx.forward(std::vector{sequence_tokens{s, feed}}, cache, logits);
            // float32 in both, summed in different orders: within 1e-4 of logits of size ~10
            for (std::size_t v = 0; v < 12; ++v) REQUIRE(logits[v] == Approx(c["logits"][step][v].get<double>()).margin(1e-4));
            const token_id best = static_cast<token_id>(std::max_element(logits.begin(), logits.end()) - logits.begin());
            REQUIRE(best == c["ids"][step].get<token_id>());
            feed = {best};
        }
        cache.release(s);
    }
}

TEST_CASE("digits model: held-out numbers read to the issue's accuracy, greedy and beam 4", "[model][seq2seq][shipped]") {
    const seq2seq_model<float> model(shipped().weights);
    seq2seq_context<float> ctx(model);
    auto cache = model.make_cache({.capacity_tokens = 4096});
    const auto set = test_set();
    REQUIRE(set.size() == 300);
    std::vector<source_view<float>> views;
    std::vector<std::vector<float>> data;
    for (const auto& t : set) data.push_back(patches_of(t.path));
    for (const auto& d : data) views.push_back({.vectors = d});
    const std::vector<std::vector<token_id>> prompts(set.size(), std::vector<token_id>{*shipped().ids.bos});
    const generation_options options{.max_new_tokens = 8, .eos = {*shipped().ids.eos}};

    // All 300 in one call: encoded in one batch, the i-th sequence greedy creates bound to the i-th source.
    auto big = model.make_cache({.capacity_tokens = 300 * 16, .max_sequences = 300});
    big.bind_new_sequences(ctx.encode(views));
    const generation_result greedy_out = greedy(ctx, big, prompts, options);
    std::size_t exact = 0, errors = 0, digits = 0, beam_exact = 0;
    for (std::size_t i = 0; i < set.size(); ++i) {
        const std::string got = text(greedy_out.sequences[i].tokens);
        exact += got == set[i].digits;
        errors += edit_distance(got, set[i].digits);
        digits += set[i].digits.size();
    }
    // Beam 4, one number at a time (each search binds its own source).
    for (std::size_t i = 0; i < set.size(); ++i) {
        cache.bind_new_sequences(std::vector{ctx.encode(views[i])});
        const beam_result b = beam_search(ctx, cache, std::span(prompts).first(1), {.num_beams = 4, .generation = options});
        beam_exact += text(b.hypotheses[0][0].tokens) == set[i].digits;
    }
    const double accuracy = static_cast<double>(exact) / 300, digit_error_rate = static_cast<double>(errors) / static_cast<double>(digits);
    const double beam_accuracy = static_cast<double>(beam_exact) / 300;
    WARN("greedy: exact " << accuracy * 100 << "%, digit error rate " << digit_error_rate * 100 << "%; beam 4: exact "
                          << beam_accuracy * 100 << "%");
    CHECK(accuracy >= 0.96);
    CHECK(digit_error_rate <= 0.012);
    CHECK(beam_accuracy >= accuracy);
}

TEST_CASE("digits model: the same outputs with and without the cache", "[model][seq2seq][shipped]") {
    const auto weights = std::make_shared<const seq2seq_weights<float>>(shipped().weights);
    const seq2seq_model<float> model(*weights);
    seq2seq_context<float> ctx(model);
    seq2seq_reference<float> ref(weights);
    auto cache = model.make_cache({.capacity_tokens = 1024});
    auto ref_cache = ref.make_cache();
    const auto set = test_set();
    const std::vector<std::vector<token_id>> prompt = {{*shipped().ids.bos}};
    const generation_options options{.max_new_tokens = 8, .eos = {*shipped().ids.eos}};
    for (std::size_t i = 0; i < set.size(); i += 15) {  // 20 numbers of every length: the reference is slow by design
        const std::vector<float> patches = patches_of(set[i].path);
        const source_view<float> source{.vectors = patches};
        cache.bind_new_sequences(std::vector{ctx.encode(source)});
        ref_cache.bind_new_sequences(std::vector{ref.encode(source)});
        CHECK(greedy(ctx, cache, prompt, options).sequences[0].tokens ==
              greedy(ref, ref_cache, prompt, options).sequences[0].tokens);
        const beam_options beams{.num_beams = 4, .num_return_sequences = 4, .generation = options};
        const beam_result a = beam_search(ctx, cache, prompt, beams), b = beam_search(ref, ref_cache, prompt, beams);
        for (std::size_t k = 0; k < 4; ++k) CHECK(a.hypotheses[0][k].tokens == b.hypotheses[0][k].tokens);
    }
}
