#include "view_cache.h"

#include "session_rules.h"

namespace wasentinel::session {

std::optional<SessionView> ViewCache::Get(const std::string& id) {
  absl::ReaderMutexLock lock(&mu_);
  auto it = views_.find(id);
  if (it == views_.end() || it->second.epoch != epoch_.load(std::memory_order_seq_cst)) {
    return std::nullopt;
  }
  SessionView view = it->second.view;
  if (it->second.conn && view.live) OverlayConnectionStats(*view.live, *it->second.conn);
  return view;
}

void ViewCache::Put(const std::string& id, const SessionView& view,
                    std::shared_ptr<wa::ConnectionHandle> conn, size_t held) {
  absl::MutexLock lock(&mu_);
  if (views_.size() > 2 * held + 1024) views_.clear();  // entries of forgotten sessions
  views_[id] = Entry{epoch_.load(std::memory_order_seq_cst), view, std::move(conn)};
}

}  // namespace wasentinel::session
