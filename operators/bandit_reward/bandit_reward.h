/* Internal read access to bandit_reward (tests, reports). */
#ifndef RS_BANDIT_REWARD_H
#define RS_BANDIT_REWARD_H

/* Closed impressions so far and the IPS / SNIPS estimates of the greedy
 * target policy (NAN before any). vctx: the operator's context. */
void rs__bandit_estimates(void *vctx, double *n, double *ips, double *snips);
/* An item's statistics (closed shows, rewards). */
int rs__bandit_arm(void *vctx, const char *item, double *shows, double *reward);
/* arms user: the statistics of (user, item), kept in `partition`. */
int rs__bandit_user_arm(void *vctx, int partition, const char *user,
                        const char *item, double *shows, double *reward);
/* thompson_model residual: an item's closed slots and residual sum, and
 * the calibration line a + b * score now. */
int rs__bandit_residual(void *vctx, const char *item, double *n, double *sum,
                        double *a, double *b);
/* arms user and thompson_model residual: (user, item)'s closed slots and
 * residual sum, kept in `partition`. */
int rs__bandit_user_residual(void *vctx, int partition, const char *user,
                             const char *item, double *n, double *sum);

#endif
