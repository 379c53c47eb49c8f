// The connection thread: the one io_context thread that owns every WhatsApp socket and the
// runtime state of the sessions held here (session-service/src/app.h lists the threads).
#pragma once

#include <boost/asio/io_context.hpp>

#include "absl/base/internal/raw_logging.h"

/// At the top of every method that must run on the connection thread `io` (an
/// boost::asio::io_context&): aborts with a message when called from any other thread. Always
/// on: the check is a thread-local lookup, far cheaper than the socket work it guards.
#define WAS_ASSERT_CONNECTION_THREAD(io)                       \
  ABSL_RAW_CHECK((io).get_executor().running_in_this_thread(), \
                 "called off the connection thread (session/connection_thread.h)")

/// The opposite, for methods that block on the connection thread (they would deadlock on it).
#define WAS_ASSERT_NOT_CONNECTION_THREAD(io)                    \
  ABSL_RAW_CHECK(!(io).get_executor().running_in_this_thread(), \
                 "would block the connection thread (session/connection_thread.h)")
