#pragma once
// Decoders keep generated tokens as trees of (token, parent) nodes — beam search's
// forest of beams, MaxEnt-TS's search tree — so a new node records one token
// instead of copying its parent's list. This spells a node's sequence out again.

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "kvdecode/core/types.hpp"

namespace kvdecode::detail {

// prompt + the tokens from the node below `stop` down to `leaf`, into `out` (cleared
// first; one allocation at most, none when `out` has room). Nodes need `token` and
// `parent` (an index; `stop` is the index above the first generated token: -1 for a
// forest whose roots are tokens, 0 for a tree whose root is the prompt).
template <class Node>
void path_tokens(std::span<const token_id> prompt, std::span<const Node> nodes, std::int32_t leaf, std::int32_t stop,
                 std::vector<token_id>& out) {
    auto parent = [&](std::int32_t n) { return nodes[static_cast<std::size_t>(n)].parent; };
    std::size_t depth = 0;
    for (std::int32_t n = leaf; n != stop; n = parent(n)) ++depth;
    out.clear();
    out.reserve(prompt.size() + depth);
    out.assign(prompt.begin(), prompt.end());
    out.resize(prompt.size() + depth);
    std::size_t at = out.size();
    for (std::int32_t n = leaf; n != stop; n = parent(n)) out[--at] = nodes[static_cast<std::size_t>(n)].token;
}

}  // namespace kvdecode::detail
