/* canary: proves that a ThreadSanitizer build still sees RCU bugs in spite of the
 * suppression in tests/tsan.supp and the annotations in src/rcu.h. Built only when
 * b_sanitize=thread. Usage: canary bug|clean
 *   bug    publishes a new object and frees the old one WITHOUT waiting for a grace
 *          period while a reader still dereferences it: TSan must report it (the
 *          tsan-canary test passes only on exit status 66 with a report).
 *   clean  the same with re_rcu_synchronize() before the free: TSan must stay quiet
 *          (the tsan-rcu-clean test; proves the annotations leave no false report).
 * Uses liburcu-qsbr through src/rcu.h exactly as the server does.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rcu.h"

#ifndef RE_TSAN
#error "canary.c is only meaningful in a ThreadSanitizer build (b_sanitize=thread)"
#endif

struct obj {
	long value;
};

static struct obj *shared;
static bool have_old;	/* reader holds the first object (release/acquire) */
static bool swapped;	/* writer has published the second one and freed or retired */
static bool stop;

static void *reader(void *arg)
{
	long sum = 0;

	(void)arg;
	urcu_qsbr_register_thread();
	for (int round = 0; round < 2; round++) {
		/* One read-side section: from here to the next quiescent state. */
		struct obj *o = re_rcu_dereference(shared);

		sum += o->value;
		if (round == 0) {
			__atomic_store_n(&have_old, true, __ATOMIC_RELEASE);
			/* A long read-side section: keep using o until the writer has moved
			 * on. In "bug" mode it frees o meanwhile; in "clean" mode it waits
			 * for our quiescent state below, so we must not wait for it here. */
			for (int i = 0; i < 2000 && !__atomic_load_n(&swapped, __ATOMIC_ACQUIRE); i++) {
				sum += *(volatile long *)&o->value;
				usleep(100);
			}
			sum += *(volatile long *)&o->value;
		}
		re_rcu_quiescent_state();
	}
	/* Stay registered until the writer is done, going offline around the wait as
	 * QSBR requires for a blocking wait. */
	re_rcu_thread_offline();
	while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
		usleep(1000);
	}
	re_rcu_thread_online();
	urcu_qsbr_unregister_thread();
	return (void *)(sum == 42 ? NULL : (void *)1);	/* keep sum observable */
}

int main(int argc, char **argv)
{
	struct obj *first, *second, *old;
	pthread_t t;
	bool bug;

	if (argc != 2 || (strcmp(argv[1], "bug") != 0 && strcmp(argv[1], "clean") != 0)) {
		fprintf(stderr, "usage: canary bug|clean\n");
		return 2;
	}
	bug = strcmp(argv[1], "bug") == 0;
	first = malloc(sizeof(*first));
	second = malloc(sizeof(*second));
	if (first == NULL || second == NULL) {
		return 1;
	}
	first->value = 1;
	second->value = 2;
	re_rcu_assign_pointer(shared, first);
	if (pthread_create(&t, NULL, reader, NULL) != 0) {
		return 1;
	}
	while (!__atomic_load_n(&have_old, __ATOMIC_ACQUIRE)) {
		usleep(100);
	}
	old = shared;	/* the writer is the only updater */
	re_rcu_assign_pointer(shared, second);
	if (!bug) {
		re_rcu_synchronize();	/* waits for the reader's quiescent state */
	}
	free(old);	/* "bug": the reader may still be using it */
	__atomic_store_n(&swapped, true, __ATOMIC_RELEASE);
	__atomic_store_n(&stop, true, __ATOMIC_RELEASE);
	(void)pthread_join(t, NULL);
	free(second);
	printf("canary %s: finished without a ThreadSanitizer report\n", argv[1]);
	return 0;
}
