/* glassbox from C: explain a photo with the default model and check what it found.
 *
 *   cargo build --release -p glassbox-c
 *   cc examples/c/explain.c -Iinclude -Ltarget/release -lglassbox_c -o explain
 *   LD_LIBRARY_PATH=target/release ./explain tests/data/chelsea.png [METHOD] [OUT_DIR]
 *
 * Exits 0 when the explained class is a cat (ImageNet 281-285) and a bad call reported its
 * error, 1 otherwise. .ci/run runs it.
 */
#include <stdio.h>
#include <string.h>

#include "glassbox.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s IMAGE [METHOD] [OUT_DIR]\n", argv[0]);
        return 1;
    }
    const char *method = argc > 2 ? argv[2] : "elbow";

    GlassboxClassifier *classifier = NULL;
    if (glassbox_classifier_new(NULL, "cpu", &classifier) != GLASSBOX_OK) {
        fprintf(stderr, "load: %s\n", glassbox_last_error());
        return 1;
    }

    /* A bad call returns a status and says why; nothing crashes. */
    GlassboxExplanation *bad = NULL;
    int status = glassbox_explain(classifier, argv[1], "no-such-method", &bad);
    if (status != GLASSBOX_INVALID || bad != NULL || strlen(glassbox_last_error()) == 0) {
        fprintf(stderr, "a bad method was not refused (status %d)\n", status);
        return 1;
    }
    printf("refused as expected: %s\n", glassbox_last_error());

    GlassboxExplanation *e = NULL;
    if (glassbox_explain(classifier, argv[1], method, &e) != GLASSBOX_OK) {
        fprintf(stderr, "explain: %s\n", glassbox_last_error());
        glassbox_classifier_free(classifier);
        return 1;
    }
    size_t width = 0, height = 0, kept = 0;
    const uint8_t *mask = glassbox_explanation_mask(e, &width, &height);
    for (size_t i = 0; i < width * height; i++) {
        kept += mask[i];
    }
    size_t class_index = glassbox_explanation_class(e);
    printf("%s: %s (%zu) p=%.4f, %s kept %.1f %% of the %zux%zu view\n", argv[1],
           glassbox_explanation_label(e), class_index, glassbox_explanation_probability(e),
           method, 100.0 * (double)kept / (double)(width * height), width, height);

    if (argc > 3 && glassbox_explanation_save(classifier, e, argv[3]) != GLASSBOX_OK) {
        fprintf(stderr, "save: %s\n", glassbox_last_error());
        return 1;
    }
    int is_cat = class_index >= 281 && class_index <= 285;
    glassbox_explanation_free(e);
    glassbox_classifier_free(classifier);
    return is_cat ? 0 : 1;
}
