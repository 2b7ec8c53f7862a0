// The compiled library as one translation unit: rnnkit/native/__init__.py compiles this file.
//
// Each cell's loop is in its own file, which also compiles on its own; one unit parses the
// shared header once instead of four times and lets the compiler see all of it, as when the
// cells were one file.

#include "native.h"

#include "lstm.cpp"
#include "gru.cpp"
#include "elman.cpp"
#include "weight_grads.cpp"
