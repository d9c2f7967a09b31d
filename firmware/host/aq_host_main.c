/* Host runner of a generated model: reads N input tensors from stdin, writes N outputs to
 * stdout. The same generated C as on the board, compiled with the host gcc, so tests can compare
 * it with the TFLite Micro interpreter byte for byte. Usage: aq_host_runner N < in > out */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aq_model.h"

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s N < inputs > outputs\n", argv[0]);
    return 2;
  }
  const long n = strtol(argv[1], NULL, 10);
  if (aq_model_prepare) aq_model_prepare();
  for (long i = 0; i < n; ++i) {
    if (fread(aq_model_input(), 1, aq_model_input_bytes, stdin) != aq_model_input_bytes) {
      fprintf(stderr, "short input at sample %ld\n", i);
      return 1;
    }
    if (aq_model_invoke() != 0) {
      fprintf(stderr, "invoke failed at sample %ld\n", i);
      return 1;
    }
    fwrite(aq_model_output(), 1, aq_model_output_bytes, stdout);
  }
  return 0;
}
