# kqueue backend sources, included by src/CMakeLists.txt when EVLOOP_BACKEND resolves to kqueue.
set(EVLOOP_BSD_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/kqueue_poller.cpp
  ${CMAKE_CURRENT_LIST_DIR}/kqueue_waker.cpp
)
