/* SoC bring-up for emulated boards: nothing to do. QEMU starts the core at its nominal clock and
 * its RCC/GPIO models are stubs (a PLL-ready bit would never set), so this driver must not touch
 * them. Real boards pick aq_soc_<family>.c through their TOML's [soc] driver. */
#include "aq_board.h"

void aq_soc_init(void) {}
