// kvdecode-digits: read the number in an image of handwritten digits with the shipped
// encoder-decoder (models/digits.gguf), or score a folder of labelled images.
//
//   kvdecode-digits models/digits-test/0042_31415.pgm          # prints the digits
//   kvdecode-digits --num-beams 4 a.png b.pgm
//   kvdecode-digits --no-cache a.pgm      # the no-cache reference path (recomputes everything)
//   kvdecode-digits --eval models/digits-test   # NNNN_<digits>.pgm files: accuracy, digit error rate
//
// Images: binary PGM (P5) or PNG (read by stb_image, Debian's libstb-dev), grayscale
// with 0 as background, the model's height (28 pixels) and a whole number of 28-pixel
// digit cells. Anything else is an error that says why. Exit status 1 if any image failed.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <stb/stb_image.h>

#include <kvdecode/kvdecode.hpp>

#ifndef KVDECODE_DEFAULT_MODEL_DIR
#define KVDECODE_DEFAULT_MODEL_DIR "models"
#endif

namespace {

using namespace kvdecode;

struct gray_image {
    std::vector<std::uint8_t> pixels;
    std::size_t width = 0, height = 0;
};

// Binary PGM or PNG only, told apart by their signatures before stb_image reads them.
gray_image read_image(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open it");
    char head[8] = {};
    in.read(head, sizeof head);
    const bool png = in.gcount() == 8 && std::memcmp(head, "\x89PNG\r\n\x1a\n", 8) == 0;
    const bool pgm = in.gcount() >= 2 && head[0] == 'P' && head[1] == '5';
    if (in.gcount() >= 2 && head[0] == 'P' && head[1] == '2')
        throw std::runtime_error("ASCII PGM (P2) is not read: save it as binary PGM (P5) or PNG");
    if (!png && !pgm) throw std::runtime_error("not a binary PGM (P5) or PNG image");
    int w = 0, h = 0, channels = 0;
    std::unique_ptr<stbi_uc, void (*)(void*)> data(stbi_load(path.c_str(), &w, &h, &channels, 1), stbi_image_free);
    if (!data) throw std::runtime_error(std::string("unreadable image: ") + stbi_failure_reason());
    gray_image img;
    img.width = static_cast<std::size_t>(w);
    img.height = static_cast<std::size_t>(h);
    img.pixels.assign(data.get(), data.get() + img.width * img.height);
    return img;
}

struct reader {
    seq2seq_gguf file;
    seq2seq_model<float> model;
    seq2seq_context<float> ctx;
    seq2seq_reference<float> reference;
    seq2seq_cache<float> cache;
    seq2seq_reference<float>::cache_type reference_cache;

    reader(seq2seq_gguf f, std::size_t threads)
        : file(std::move(f)), model(file.weights), ctx(model, {.threads = threads}),
          reference(std::make_shared<const seq2seq_weights<float>>(file.weights)),
          cache(model.make_cache({.capacity_tokens = 4096})), reference_cache(reference.make_cache()) {
        if (!file.patches) throw std::runtime_error("the model file does not say how images become patches");
        if (!file.ids.bos || !file.ids.eos) throw std::runtime_error("the model file has no BOS or EOS token");
    }

    // The digits the model reads in `img`: greedy (beams 1) or beam search, cached or not.
    std::string read(const gray_image& img, std::size_t beams, bool no_cache) {
        const std::vector<float> patches =
            image_patches(img.pixels, img.width, img.height, *file.patches, model.seq2seq().max_source_length);
        const source_view<float> source{.vectors = patches};
        const std::vector<std::vector<token_id>> prompt = {{*file.ids.bos}};
        const generation_options generation{.max_new_tokens = 8, .eos = {*file.ids.eos}};
        std::vector<token_id> tokens;
        if (no_cache) {
            reference_cache.bind_new_sequences(std::vector{reference.encode(source)});
            tokens = beams > 1 ? beam_search(reference, reference_cache, prompt, {.num_beams = beams, .generation = generation})
                                     .hypotheses[0][0].tokens
                               : greedy(reference, reference_cache, prompt, generation).sequences[0].tokens;
        } else {
            cache.bind_new_sequences(std::vector{ctx.encode(source)});
            tokens = beams > 1 ? beam_search(ctx, cache, prompt, {.num_beams = beams, .generation = generation})
                                     .hypotheses[0][0].tokens
                               : greedy(ctx, cache, prompt, generation).sequences[0].tokens;
        }
        std::string text;
        for (std::size_t i = 1; i < tokens.size(); ++i)  // after BOS, up to EOS
            if (tokens[i] != *file.ids.eos) text += file.tokens.empty() ? std::to_string(tokens[i]) : file.tokens[tokens[i]];
        return text;
    }
};

// Levenshtein distance between digit strings.
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

int main(int argc, char** argv) {
    CLI::App app{"Reads the number in images of handwritten digits (kvdecode's encoder-decoder example)"};
    std::string model_path = std::string(KVDECODE_DEFAULT_MODEL_DIR) + "/digits.gguf";
    std::size_t beams = 1, threads = 1;
    bool no_cache = false;
    std::string eval_dir;
    std::vector<std::string> images;
    app.add_option("--model", model_path, "encoder-decoder GGUF file")->capture_default_str();
    app.add_option("--num-beams", beams, "beam search with this many beams (1: greedy)")->check(CLI::Range(1, 64));
    app.add_option("--threads", threads, "threads")->check(CLI::Range(1, 256));
    app.add_flag("--no-cache", no_cache, "decode with the no-cache reference (recomputes encoder and decoder every step)");
    app.add_option("--eval", eval_dir, "score every NNNN_<digits>.pgm/.png in this folder");
    app.add_option("images", images, "PGM or PNG images, 28 pixels high");
    CLI11_PARSE(app, argc, argv);
    if (images.empty() && eval_dir.empty()) {
        std::fprintf(stderr, "kvdecode-digits: give images, or --eval FOLDER (see --help)\n");
        return 1;
    }
    std::unique_ptr<reader> r;
    try {
        r = std::make_unique<reader>(read_seq2seq_gguf(model_path), threads);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "kvdecode-digits: %s: %s\n", model_path.c_str(), e.what());
        return 1;
    }
    int status = 0;
    for (const std::string& path : images) {
        try {
            std::printf("%s: %s\n", path.c_str(), r->read(read_image(path), beams, no_cache).c_str());
        } catch (const std::exception& e) {
            std::fprintf(stderr, "kvdecode-digits: %s: %s\n", path.c_str(), e.what());
            status = 1;
        }
    }
    if (!eval_dir.empty()) {
        std::vector<std::filesystem::path> files;
        std::error_code ec;
        for (const auto& entry : std::filesystem::directory_iterator(eval_dir, ec))
            if (entry.path().extension() == ".pgm" || entry.path().extension() == ".png") files.push_back(entry.path());
        if (ec || files.empty()) {
            std::fprintf(stderr, "kvdecode-digits: %s: no .pgm or .png files\n", eval_dir.c_str());
            return 1;
        }
        std::sort(files.begin(), files.end());
        std::size_t exact = 0, errors = 0, digits = 0;
        const auto start = std::chrono::steady_clock::now();
        for (const auto& f : files) {
            const std::string stem = f.stem().string(), label = stem.substr(stem.find('_') + 1);
            try {
                const std::string got = r->read(read_image(f), beams, no_cache);
                exact += got == label;
                errors += edit_distance(got, label);
                digits += label.size();
            } catch (const std::exception& e) {
                std::fprintf(stderr, "kvdecode-digits: %s: %s\n", f.c_str(), e.what());
                status = 1;
            }
        }
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::printf("%zu numbers, %s%s: exact %.2f%% (%zu), digit error rate %.2f%% (%zu of %zu digits), %.1f numbers/s\n",
                    files.size(), beams > 1 ? ("beam " + std::to_string(beams)).c_str() : "greedy",
                    no_cache ? ", no cache" : "", 100.0 * static_cast<double>(exact) / static_cast<double>(files.size()), exact,
                    100.0 * static_cast<double>(errors) / static_cast<double>(std::max<std::size_t>(digits, 1)), errors, digits,
                    static_cast<double>(files.size()) / seconds);
    }
    return status;
}
