// A libcurl header list (curl_slist) owned for the length of one request. Private to the
// libcurl senders (webhook.cc, email.cc): no public header names a libcurl type.
#pragma once

#include <curl/curl.h>

#include <string>

namespace wasentinel::alert {

struct CurlHeaders {
  curl_slist* list = nullptr;
  CurlHeaders() = default;
  CurlHeaders(const CurlHeaders&) = delete;
  CurlHeaders& operator=(const CurlHeaders&) = delete;
  ~CurlHeaders() { curl_slist_free_all(list); }
  void Add(const std::string& line) { list = curl_slist_append(list, line.c_str()); }
};

}  // namespace wasentinel::alert
