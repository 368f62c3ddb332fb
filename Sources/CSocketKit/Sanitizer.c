// ThreadSanitizer hooks for locks it cannot see (see Mutex+Sanitizer.swift). Built with
// -fsanitize=thread they call TSan's public annotations; otherwise they are empty.
#include "CSocketKitSanitizer.h"

#if defined(__has_feature)
#  if __has_feature(thread_sanitizer)
#    define CSOCKETKIT_TSAN 1
#  endif
#endif

#ifdef CSOCKETKIT_TSAN
void __tsan_acquire(void *address);
void __tsan_release(void *address);
void CSocketKit_tsan_acquire(const void *address) { __tsan_acquire((void *)address); }
void CSocketKit_tsan_release(const void *address) { __tsan_release((void *)address); }
#else
void CSocketKit_tsan_acquire(const void *address) { (void)address; }
void CSocketKit_tsan_release(const void *address) { (void)address; }
#endif
