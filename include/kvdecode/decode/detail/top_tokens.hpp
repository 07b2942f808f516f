#pragma once
// The k best tokens of a row of scores, best first, ties to the lower id, leaving
// out tokens a processor removed (-infinity): beam search's candidates of a beam,
// MaxEnt-TS's children of a node.

#include <algorithm>
#include <cstddef>
#include <limits>
#include <numeric>
#include <span>
#include <vector>

#include "kvdecode/core/types.hpp"

namespace kvdecode::detail {

// `order` is scratch of the row's size (sized once by the caller). The result is a
// prefix of it: at most k ids, fewer where the row has fewer finite scores.
template <class T>
std::span<const token_id> top_tokens(std::span<const T> row, std::size_t k, std::span<token_id> order) {
    k = std::min(k, row.size());
    std::iota(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(row.size()), token_id{0});
    const auto better = [&](token_id a, token_id b) { return row[a] > row[b] || (row[a] == row[b] && a < b); };
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k),
                      order.begin() + static_cast<std::ptrdiff_t>(row.size()), better);
    std::size_t finite = 0;
    while (finite < k && row[order[finite]] != -std::numeric_limits<T>::infinity()) ++finite;
    return std::span<const token_id>(order.data(), finite);
}

}  // namespace kvdecode::detail
