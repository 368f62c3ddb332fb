// ThreadSanitizer annotations (Sanitizer.c). Swift's clang importer does not see
// -fsanitize=thread, so the check for it lives in the .c file, which SwiftPM compiles with the
// same sanitizer flags as the Swift code; without TSan both calls do nothing.
#ifndef CSOCKETKIT_SANITIZER_H
#define CSOCKETKIT_SANITIZER_H

/// TSan: a happens-before edge from the last release of `address` to this thread.
void CSocketKit_tsan_acquire(const void *address);
/// TSan: everything this thread did so far happens before the next acquire of `address`.
void CSocketKit_tsan_release(const void *address);

#endif
