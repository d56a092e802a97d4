/** A loop's pause that something else may cut short (new work arrived, or the loop is stopping). */
export class Nap {
  private wakeUp: (() => void) | null = null;

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        if (this.wakeUp === done) this.wakeUp = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wakeUp = done;
    });
  }

  wake = (): void => {
    this.wakeUp?.();
  };
}
