#include "pattern.h"

/* Greedy matching that remembers only the most recent '*': when a literal
 * fails, that star absorbs one more character of name and matching resumes
 * just after it. Going back to earlier stars is never needed, because
 * whatever an earlier star could absorb the latest one can absorb too. So
 * the work is at most length(pattern) x length(name), usually about
 * length(name): no recursion, no exponential blow-up. */
bool pattern_match(const char *pattern, const char *name)
{
    if (pattern == NULL || name == NULL)
        return false;
    const char *star_resume = NULL;   /* pattern just after the last '*' */
    const char *name_resume = NULL;   /* where that star's run ends so far */
    while (*name != '\0') {
        if (*pattern == '*') {
            while (*pattern == '*')
                pattern++;
            star_resume = pattern;
            name_resume = name;
        } else if (*pattern == *name) {
            pattern++;
            name++;
        } else if (star_resume != NULL) {
            pattern = star_resume;
            name = ++name_resume;
        } else {
            return false;
        }
    }
    while (*pattern == '*')
        pattern++;
    return *pattern == '\0';
}
