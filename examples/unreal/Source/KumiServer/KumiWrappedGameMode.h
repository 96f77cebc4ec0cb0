// NOT COMPILED HERE. Illustrative Unreal Engine 5 dedicated-server code; see ../../README.md.
#pragma once

#include "CoreMinimal.h"
#include "GameFramework/GameModeBase.h"
#include "KumiWrappedGameMode.generated.h"

/**
 * Admission for servers run by `kumi gameserver wrap` (uploaded builds): PreLogin hands the client's
 * ?token= to the wrapper (POST $KUMI_ADMIT_URL) and admits the player id it answers. No JWT, JWKS
 * or crypto code in the game. AKumiGameMode (direct verification) is the alternative for servers
 * you run yourself.
 */
UCLASS()
class AKumiWrappedGameMode : public AGameModeBase
{
	GENERATED_BODY()
public:
	virtual void InitGame(const FString& MapName, const FString& Options, FString& ErrorMessage) override;
	// UE 5.1+: PreLogin may finish asynchronously, so the HTTP call never blocks the game thread.
	virtual void PreLoginAsync(const FString& Options, const FString& Address, const FUniqueNetIdRepl& UniqueId, const FOnPreLoginCompleteDelegate& OnComplete) override;
	virtual FString InitNewPlayer(APlayerController* NewPlayerController, const FUniqueNetIdRepl& UniqueId, const FString& Options, const FString& Portal) override;

private:
	FString AdmitUrl;
	TMap<FString, FString> Admitted; // token -> player id, from PreLoginAsync to InitNewPlayer
};
