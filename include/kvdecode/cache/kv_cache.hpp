#pragma once
// The KV cache: preallocated once, paged into fixed-size blocks with reference
// counts. A sequence is a handle to a list of blocks plus a length; forking a
// sequence shares every block and copies no K/V bytes. Appending writes in place
// into the sequence's last block, copying that block first only if another
// sequence shares it (copy-on-write), so a fork costs at most one partial block.
//
// Storage, per layer, for K and for V: [block][kv_head][block_size][head_dim], of
// the cache's kv_type (kv_type.hpp): T itself, or float16 / bfloat16 bits, rounded
// once as store_kv writes a row. One block id names the same slot in every layer's pool.
//
// Every operation either succeeds or throws leaving the cache exactly as it was.
// A cache belongs to one decoding call at a time (no internal locking).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "kvdecode/cache/block_pool.hpp"
#include "kvdecode/cache/kv_type.hpp"
#include "kvdecode/core/aligned_buffer.hpp"
#include "kvdecode/core/error.hpp"
#include "kvdecode/core/model_config.hpp"
#include "kvdecode/quant/half_vector.hpp"

namespace kvdecode {

struct kv_cache_options {
    std::size_t capacity_tokens = 0;  // K/V rows the cache can hold in all; 0: one full context
    std::size_t block_size = 16;      // tokens per block
    std::size_t max_sequences = 256;  // live sequence handles at once (beams, tree nodes, ...)
    kv_type storage = kv_type::f32;   // f16 / bf16: half the bytes (float activations only)
};

// f(std::integral_constant<quant::half_format, F>{}) with the 16-bit format a kv_type
// stores (nothing for f32): the one place that maps the two, for the cache's writes
// and attention's reads.
template <class F>
void with_half_format(kv_type t, F&& f) {
    if (t == kv_type::f16) f(std::integral_constant<quant::half_format, quant::half_format::f16>{});
    if (t == kv_type::bf16) f(std::integral_constant<quant::half_format, quant::half_format::bf16>{});
}

struct kv_cache_stats {
    std::size_t blocks_total = 0;
    std::size_t blocks_used = 0;
    std::size_t blocks_shared = 0;  // held by more than one sequence
    std::size_t blocks_free = 0;
    std::size_t bytes_per_block = 0;  // K and V of one block over all layers
    std::size_t bytes_total = 0;
    std::size_t bytes_used = 0;
    std::size_t sequences = 0;        // live handles
    std::size_t blocks_copied = 0;    // block copies since construction (copy-on-write and copy())
    std::size_t bytes_copied = 0;     // K/V bytes those copies moved
};

template <class T>
class kv_cache {
public:
    using scalar_type = T;

    kv_cache(const model_config& config, kv_cache_options options = {})
        : config_(validated(config)), options_(resolve(options, config_)),
          max_blocks_per_sequence_(ceil_div(config_.seq_len, options_.block_size)),
          pool_(ceil_div(options_.capacity_tokens, options_.block_size)),
          sequences_(options_.max_sequences),
          block_tables_(options_.max_sequences * max_blocks_per_sequence_),
          element_bytes_(kv_element_bytes<T>(options_.storage)),
          block_stride_(config_.n_kv_heads * options_.block_size * config_.head_dim),
          layer_stride_(pool_.total() * block_stride_),
          keys_(config_.n_layers * layer_stride_ * element_bytes_), values_(config_.n_layers * layer_stride_ * element_bytes_) {
        free_slots_.reserve(options_.max_sequences);
        for (std::size_t i = options_.max_sequences; i-- > 0;) free_slots_.push_back(static_cast<seq_id>(i));
    }

    const model_config& config() const noexcept { return config_; }
    std::size_t block_size() const noexcept { return options_.block_size; }
    std::size_t max_sequences() const noexcept { return options_.max_sequences; }
    std::size_t capacity_tokens() const noexcept { return pool_.total() * options_.block_size; }
    kv_type storage() const noexcept { return options_.storage; }

    // --- Sequence handles -------------------------------------------------------

    // A new, empty sequence.
    seq_id create() {
        const seq_id s = take_slot();
        sequences_[s] = {};
        sequences_[s].live = true;
        return s;
    }

    // A new sequence sharing all of `parent`'s blocks. No K/V bytes are copied.
    seq_id fork(seq_id parent) {
        check(parent, "fork");
        const seq_id child = take_slot();
        sequences_[child] = sequences_[parent];
        const auto blocks = block_list(parent);
        std::copy(blocks.begin(), blocks.end(), table(child));
        for (block_id b : blocks) pool_.retain(b);
        return child;
    }

    // A new sequence with private copies of all of `source`'s blocks: every K/V byte
    // is copied (and counted in stats().bytes_copied). What fork avoids; here for
    // baselines and for callers that want storage of their own.
    seq_id copy(seq_id source) {
        check(source, "copy");
        const sequence src = sequences_[source];
        if (src.n_blocks > pool_.free())
            throw cache_full("kvdecode: kv_cache is full: copying a sequence needs " + std::to_string(src.n_blocks) +
                             " blocks, " + std::to_string(pool_.free()) + " are free");
        const seq_id s = take_slot();
        sequences_[s] = src;
        for (std::size_t i = 0; i < src.n_blocks; ++i) {
            const block_id from = table(source)[i], to = pool_.allocate();
            table(s)[i] = to;
            const std::size_t rows = std::min(options_.block_size, src.length - i * options_.block_size);
            copy_rows(from, to, rows);
        }
        return s;
    }

    // Rolls `s` back to its first `length` tokens, returning the blocks it no longer needs.
    void truncate(seq_id s, std::size_t length) {
        check(s, "truncate");
        sequence& seq = sequences_[s];
        if (length > seq.length)
            throw std::invalid_argument("kvdecode: kv_cache::truncate: length " + std::to_string(length) +
                                        " exceeds the sequence's length " + std::to_string(seq.length));
        const std::size_t keep = ceil_div(length, options_.block_size);
        for (std::size_t i = keep; i < seq.n_blocks; ++i) pool_.release(table(s)[i]);
        seq.n_blocks = static_cast<std::uint32_t>(keep);
        seq.length = static_cast<std::uint32_t>(length);
    }

    // Ends `s`: its handle becomes invalid and its blocks return to the pool once unshared.
    void release(seq_id s) {
        check(s, "release");
        truncate(s, 0);
        sequences_[s].live = false;
        free_slots_.push_back(s);  // capacity reserved: never reallocates
    }

    std::size_t length(seq_id s) const {
        check(s, "length");
        return sequences_[s].length;
    }

    bool contains(seq_id s) const noexcept { return s < sequences_.size() && sequences_[s].live; }

    std::span<const block_id> block_list(seq_id s) const {
        check(s, "block_list");
        return {table(s), sequences_[s].n_blocks};
    }

    kv_cache_stats stats() const noexcept {
        kv_cache_stats st;
        st.blocks_total = pool_.total();
        st.blocks_used = pool_.used();
        st.blocks_shared = pool_.shared();
        st.blocks_free = pool_.free();
        st.bytes_per_block = 2 * config_.n_layers * block_stride_ * element_bytes_;
        st.bytes_total = st.blocks_total * st.bytes_per_block;
        st.bytes_used = st.blocks_used * st.bytes_per_block;
        st.sequences = options_.max_sequences - free_slots_.size();
        st.blocks_copied = blocks_copied_;
        st.bytes_copied = bytes_copied_;
        return st;
    }

    // --- Appending (used by the model's forward) --------------------------------

    // Blocks that appending n tokens to `s` takes from the pool: new blocks past the
    // current last one, plus one if the last block is partial and shared.
    std::size_t blocks_to_extend(seq_id s, std::size_t n) const {
        check(s, "blocks_to_extend");
        const sequence& seq = sequences_[s];
        const std::size_t grow = ceil_div(seq.length + n, options_.block_size) - seq.n_blocks;
        return grow + (needs_copy_on_write(s) && n > 0 ? 1 : 0);
    }

    std::size_t free_blocks() const noexcept { return pool_.free(); }

    // Makes room for n more tokens at the end of `s` (length grows by n). The caller
    // then writes their K/V rows with key()/value(). Throws cache_full, changing
    // nothing, when the pool lacks the blocks.
    void extend(seq_id s, std::size_t n) {
        const std::size_t needed = blocks_to_extend(s, n);
        sequence& seq = sequences_[s];
        if (seq.length + n > config_.seq_len)
            throw std::invalid_argument("kvdecode: kv_cache::extend: length " + std::to_string(seq.length + n) +
                                        " would exceed the context length " + std::to_string(config_.seq_len));
        if (needed > pool_.free())
            throw cache_full("kvdecode: kv_cache is full: appending " + std::to_string(n) +
                             " tokens needs " + std::to_string(needed) + " blocks, " +
                             std::to_string(pool_.free()) + " of " + std::to_string(pool_.total()) + " are free");
        if (n == 0) return;
        if (needs_copy_on_write(s)) copy_last_block(s);
        while (seq.n_blocks < ceil_div(seq.length + n, options_.block_size))
            table(s)[seq.n_blocks++] = pool_.allocate();
        seq.length += static_cast<std::uint32_t>(n);
    }

    // Writes the K and V rows (head_dim values each) of token `pos` of `s` in one layer
    // and kv head, rounded to the storage type. pos must be below length(s) (the caller
    // extended the sequence).
    void store_kv(std::size_t layer, seq_id s, std::size_t pos, std::size_t kv_head, const T* k, const T* v) noexcept {
        const std::size_t at = row_offset(layer, s, pos, kv_head), hd = config_.head_dim;
        if constexpr (std::is_same_v<T, float>) {
            if (options_.storage != kv_type::f32) {
                with_half_format(options_.storage, [&](auto format) {
                    quant::narrow_half<format.value>(k, reinterpret_cast<std::uint16_t*>(keys_.data()) + at, hd);
                    quant::narrow_half<format.value>(v, reinterpret_cast<std::uint16_t*>(values_.data()) + at, hd);
                });
                return;
            }
        }
        std::copy_n(k, hd, key_at(layer, s, pos, kv_head));
        std::copy_n(v, hd, value_at(layer, s, pos, kv_head));
    }

    // K (or V) rows of one block for one layer and kv head: (block_size, head_dim)
    // values of type E, the storage's: T for kv_type::f32, the 16-bit patterns
    // (std::uint16_t) for f16 and bf16.
    template <class E = T>
    E* key(std::size_t layer, block_id b, std::size_t kv_head) noexcept {
        return reinterpret_cast<E*>(keys_.data()) + offset(layer, b, kv_head);
    }
    template <class E = T>
    const E* key(std::size_t layer, block_id b, std::size_t kv_head) const noexcept {
        return reinterpret_cast<const E*>(keys_.data()) + offset(layer, b, kv_head);
    }
    template <class E = T>
    E* value(std::size_t layer, block_id b, std::size_t kv_head) noexcept {
        return reinterpret_cast<E*>(values_.data()) + offset(layer, b, kv_head);
    }
    template <class E = T>
    const E* value(std::size_t layer, block_id b, std::size_t kv_head) const noexcept {
        return reinterpret_cast<const E*>(values_.data()) + offset(layer, b, kv_head);
    }

    // The K (or V) row of token `pos` of `s` in one layer and kv head: (head_dim) values
    // of the storage's type E, as key(). The one place that maps a position to its block
    // and the row inside it; pos must be below length(s).
    template <class E = T>
    E* key_at(std::size_t layer, seq_id s, std::size_t pos, std::size_t kv_head) noexcept {
        return reinterpret_cast<E*>(keys_.data()) + row_offset(layer, s, pos, kv_head);
    }
    template <class E = T>
    const E* key_at(std::size_t layer, seq_id s, std::size_t pos, std::size_t kv_head) const noexcept {
        return reinterpret_cast<const E*>(keys_.data()) + row_offset(layer, s, pos, kv_head);
    }
    template <class E = T>
    E* value_at(std::size_t layer, seq_id s, std::size_t pos, std::size_t kv_head) noexcept {
        return reinterpret_cast<E*>(values_.data()) + row_offset(layer, s, pos, kv_head);
    }
    template <class E = T>
    const E* value_at(std::size_t layer, seq_id s, std::size_t pos, std::size_t kv_head) const noexcept {
        return reinterpret_cast<const E*>(values_.data()) + row_offset(layer, s, pos, kv_head);
    }

private:
    struct sequence {
        std::uint32_t length = 0;
        std::uint32_t n_blocks = 0;
        bool live = false;
    };

    static std::size_t ceil_div(std::size_t a, std::size_t b) noexcept { return (a + b - 1) / b; }

    static kv_cache_options resolve(kv_cache_options o, const model_config& c) {
        if (o.block_size == 0) throw std::invalid_argument("kvdecode: kv_cache: block_size must be positive");
        if (o.max_sequences == 0) throw std::invalid_argument("kvdecode: kv_cache: max_sequences must be positive");
        if (o.capacity_tokens == 0) o.capacity_tokens = c.seq_len;
        if (!std::is_same_v<T, float> && o.storage != kv_type::f32)
            throw std::invalid_argument("kvdecode: kv_cache: storage " + std::string(to_string(o.storage)) +
                                        " needs float activations; a double cache stores f32 (as double)");
        return o;
    }

    void check(seq_id s, const char* op) const {
        if (!contains(s))
            throw std::invalid_argument(std::string("kvdecode: kv_cache::") + op + ": sequence " +
                                        std::to_string(s) + " does not exist (never created or released)");
    }

    seq_id take_slot() {
        if (free_slots_.empty())
            throw cache_full("kvdecode: kv_cache has no free sequence handle: all " +
                             std::to_string(options_.max_sequences) +
                             " are live (raise kv_cache_options::max_sequences)");
        const seq_id s = free_slots_.back();
        free_slots_.pop_back();
        return s;
    }

    block_id* table(seq_id s) noexcept { return block_tables_.data() + s * max_blocks_per_sequence_; }
    const block_id* table(seq_id s) const noexcept { return block_tables_.data() + s * max_blocks_per_sequence_; }

    bool needs_copy_on_write(seq_id s) const noexcept {
        const sequence& seq = sequences_[s];
        return seq.length % options_.block_size != 0 && pool_.ref_count(table(s)[seq.n_blocks - 1]) > 1;
    }

    // Gives `s` a private copy of its shared, partially filled last block.
    void copy_last_block(seq_id s) {
        sequence& seq = sequences_[s];
        block_id& last = table(s)[seq.n_blocks - 1];
        const block_id fresh = pool_.allocate();
        copy_rows(last, fresh, seq.length % options_.block_size);
        pool_.release(last);
        last = fresh;
    }

    // The first `rows` K/V rows of block `from`, in every layer and head, into block `to`.
    void copy_rows(block_id from, block_id to, std::size_t rows) {
        const std::size_t row_bytes = rows * config_.head_dim * element_bytes_;
        for (std::size_t l = 0; l < config_.n_layers; ++l)
            for (std::size_t h = 0; h < config_.n_kv_heads; ++h) {
                const std::size_t src = offset(l, from, h) * element_bytes_, dst = offset(l, to, h) * element_bytes_;
                std::memcpy(keys_.data() + dst, keys_.data() + src, row_bytes);
                std::memcpy(values_.data() + dst, values_.data() + src, row_bytes);
            }
        ++blocks_copied_;
        bytes_copied_ += 2 * config_.n_layers * config_.n_kv_heads * row_bytes;
    }

    std::size_t offset(std::size_t layer, block_id b, std::size_t kv_head) const noexcept {
        return layer * layer_stride_ + b * block_stride_ + kv_head * options_.block_size * config_.head_dim;
    }

    std::size_t row_offset(std::size_t layer, seq_id s, std::size_t pos, std::size_t kv_head) const noexcept {
        const std::size_t bs = options_.block_size;
        return offset(layer, table(s)[pos / bs], kv_head) + (pos % bs) * config_.head_dim;
    }

    model_config config_;
    kv_cache_options options_;
    std::size_t max_blocks_per_sequence_;
    block_pool pool_;
    std::vector<sequence> sequences_;       // indexed by seq_id
    std::vector<block_id> block_tables_;    // (max_sequences, max_blocks_per_sequence)
    std::vector<seq_id> free_slots_;
    std::size_t element_bytes_;  // of one stored value: sizeof(T), or 2 for f16 / bf16
    std::size_t block_stride_;   // values of one block in one layer's K (or V) pool
    std::size_t layer_stride_;   // values of one layer's K (or V) pool
    aligned_buffer<std::byte> keys_, values_;  // (layers, blocks, kv_heads, block_size, head_dim) values
    std::size_t blocks_copied_ = 0, bytes_copied_ = 0;
};

}  // namespace kvdecode
