// GetSession's read cache: the view of a session held here, answered on a gRPC thread without
// a round trip to the connection thread.
//
// Every connection-thread task that may change a session calls Touch() before it does; a cached
// view is served only while the epoch it was taken at is current, so it is exactly what the
// connection thread would answer now. The keepalive facts, which change without a task, are
// read from the connection's atomics when served. Tasks that change sessions are rare in the
// steady state (state changes), so reads mostly hit.
//
// Threads: Touch() and Get() from any thread; Put() from the connection thread.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "session_types.h"

namespace wasentinel::session {

class ViewCache {
 public:
  /// Something may change: every view cached so far is stale.
  void Touch() { epoch_.fetch_add(1, std::memory_order_seq_cst); }

  /// The view of `id` when a current one is cached, with its connection's live counters.
  std::optional<SessionView> Get(const std::string& id);

  /// Remembers `view` of held session `id` (with its connection, null when none) as of the
  /// current epoch. `held`: how many sessions are held, to bound the entries of forgotten ones.
  void Put(const std::string& id, const SessionView& view,
           std::shared_ptr<wa::ConnectionHandle> conn, size_t held);

 private:
  struct Entry {
    uint64_t epoch = 0;
    SessionView view;
    std::shared_ptr<wa::ConnectionHandle> conn;
  };
  std::atomic<uint64_t> epoch_{0};
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Entry> views_ ABSL_GUARDED_BY(mu_);
};

}  // namespace wasentinel::session
